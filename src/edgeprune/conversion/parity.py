"""Do the exported model's outputs match PyTorch's? Numbers first, then the verdict.

``max_rel_diff`` is the largest absolute difference divided by the largest reference magnitude: an
element-wise relative error explodes on logits near zero and would reject exact exports, while an
error relative to the output's scale says how far a runtime's rounding can move a decision.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeprune.runtime.errors import ShapeError

#: Default tolerances on ``max_rel_diff``: f32 runtimes differ only by summation order (~1e-6 seen);
#: FP16-compressed IR weights round every weight to 11 significant bits (~1e-3 seen).
TOLERANCE_F32 = 1e-4
TOLERANCE_FP16_WEIGHTS = 1e-2


@dataclass(frozen=True)
class ParityReport:
    runtime: str
    inputs: str
    samples: int
    max_abs_diff: float
    max_rel_diff: float
    top1_agreement: float  # fraction of samples whose arg-max class is the same as PyTorch's
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_rel_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def line(self) -> str:
        verdict = "ok" if self.ok else f"ABOVE tolerance {self.tolerance:g}"
        return (f"{self.runtime} vs PyTorch on {self.inputs}: max abs diff {self.max_abs_diff:.3g}, "
                f"max rel diff {self.max_rel_diff:.3g}, top-1 agreement {100 * self.top1_agreement:.1f} % "
                f"({verdict})")


def compare(reference: np.ndarray, candidate: np.ndarray, *, runtime: str, inputs: str,
            tolerance: float) -> ParityReport:
    """Differences between PyTorch's ``reference`` outputs and a runtime's ``candidate`` outputs."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ShapeError(f"{runtime} returned outputs of shape {candidate.shape}, PyTorch {reference.shape}.")
    abs_diff = float(np.max(np.abs(candidate - reference))) if reference.size else 0.0
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    rel_diff = abs_diff / scale if scale > 0 else abs_diff
    agree = float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1))) if reference.ndim == 2 else 1.0
    return ParityReport(runtime, inputs, int(reference.shape[0]), abs_diff, rel_diff, agree, tolerance)
