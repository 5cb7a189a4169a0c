"""A latency budget as users write it: ``0.6x`` (of the dense model's measured latency) or ``0.35ms``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from edgeprune.errors import ConfigError

_BUDGET = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(?P<unit>x|ms|us)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    value: float
    unit: str  # "x" (relative to the dense model) or "ms"

    @classmethod
    def parse(cls, text: str) -> Budget:
        match = _BUDGET.match(str(text))
        if not match:
            raise ConfigError(f"--latency {text!r} is not a latency budget.",
                              hint="Write a fraction of the dense model's measured latency (0.6x) or a time "
                                   "(0.35ms, 350us).")
        value, unit = float(match["value"]), match["unit"].lower()
        if unit == "us":
            value, unit = value / 1000.0, "ms"
        if not math.isfinite(value) or value <= 0 or (unit == "x" and value > 1):
            raise ConfigError(f"--latency {text!r}: a budget must be positive"
                              + (" and at most 1x (the dense model itself)." if unit == "x" else "."))
        return cls(value, unit)

    def ms(self, dense_ms: float) -> float:
        """The budget in milliseconds, given the dense model's measured latency."""
        return self.value * dense_ms if self.unit == "x" else self.value

    def __str__(self) -> str:
        return f"{self.value:g}x" if self.unit == "x" else f"{self.value:g} ms"
