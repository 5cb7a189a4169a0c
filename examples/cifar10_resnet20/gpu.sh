#!/usr/bin/env bash
# Optional, for a machine with a CUDA GPU (never needed by CI): the same experiment as run.sh with more
# retraining epochs, its table written to runs/cifar10_resnet20_gpu/RESULTS.md instead of this directory.
# Budget: about 10 minutes on a current data-centre GPU (3 schedules x EPOCHS epochs of ResNet-20 on
# CIFAR-10, plus the sensitivity analysis and the CPU latency measurement). Needs a CUDA build of torch:
# `make setup` on such a machine installs one (PyPI's torch wheel for Linux x86_64 is the CUDA build).
#
#   examples/cifar10_resnet20/gpu.sh            # EPOCHS=15 by default
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu.sh: no CUDA GPU is visible to $PYTHON's torch; run examples/cifar10_resnet20/run.sh on the CPU" >&2
    exit 2
fi
export EPOCHS=${EPOCHS:-15} DEVICE=cuda RUNS=${RUNS:-runs/cifar10_resnet20_gpu}
export OUT=${OUT:-$RUNS}
exec "$(dirname "$0")/run.sh"
