"""``edgeprune demo``: the whole job on one machine, offline, in a few minutes — every box of the flow, once.

1. train a small baseline (ResNet-20 on the built-in digits) or take a given checkpoint,
2. a filter sensitivity analysis of it (CSV and plots),
3. a one-shot schedule suggested from that analysis,
4. a grid sweep around the suggestion, run by two producer processes and one consumer over the embedded
   SQLite queue, each trial pruned, thinned, fine-tuned, exported to ONNX and measured with OpenVINO,
5. the sweep's HTML report and the IR of the best trials,
6. a summary: the baseline, the Pareto front with speed-ups over the dense model, and where every file is.

Why a package of small phases rather than one function: each phase is the same job a sub-command runs,
resumable on its own, so the demo adds only the glue (which settings, which files) and is rerun safely.
"""

from edgeprune.demo.pipeline import run_demo
from edgeprune.demo.settings import DemoSettings
from edgeprune.demo.summary import DemoResult, print_summary

__all__ = ["DemoResult", "DemoSettings", "print_summary", "run_demo"]
