#!/usr/bin/env bash
# A real-data check at ImageNet size on a small machine: ResNet-18 on a class-balanced subset of the real
# CIFAR-10 JPEG archive, resized by the loader (stored at 256, model input 224: random-resized crop + flip for
# training, centre crop for evaluation), through train -> sensitivity -> prune -> fine-tune -> export -> bench.
# Each step prints its wall time. Run from the repository root (after `make setup`):
#
#   examples/cifar10_224_resnet18/run.sh     # PER_CLASS=50 (500 train + 500 test images), runs/cifar10_224
#
# Environment overrides: ARCHIVE, PER_CLASS, EPOCHS, FT_EPOCHS, LR, FT_LR, SENS_BATCHES (of 100 test images), RUNS, EDGEPRUNE.
set -euo pipefail
ARCHIVE=${ARCHIVE:-../shared/data/cifar10-jpeg.tar.gz}
PER_CLASS=${PER_CLASS:-50}
EPOCHS=${EPOCHS:-4}
FT_EPOCHS=${FT_EPOCHS:-2}
SENS_BATCHES=${SENS_BATCHES:-2}
LR=${LR:-0.0125}      # ResNet's 0.1 for batch 256, scaled to batch 32
FT_LR=${FT_LR:-0.005}
RUNS=${RUNS:-runs/cifar10_224}
EDGEPRUNE=${EDGEPRUNE:-.venv/bin/edgeprune}
DATA="$ARCHIVE?size=224&per_class=$PER_CLASS"
mkdir -p "$RUNS"

step() {  # step NAME COMMAND...: run it, then print how long it took
    local name=$1 start=$SECONDS
    shift
    echo "== $name"
    "$@"
    echo "== $name: $((SECONDS - start)) s"
}

step train "$EDGEPRUNE" train resnet18 --data "$DATA" --epochs "$EPOCHS" --batch-size 32 --lr "$LR" \
    --weight-decay 1e-4 -o "$RUNS/dense"
step sensitivity "$EDGEPRUNE" sensitivity "$RUNS/dense/best.pth" --data "$DATA" --group filter \
    --sparsities 0:0.8:0.4 --layers 'layer*.0.conv1' --eval-batches "$SENS_BATCHES" --batch-size 100 -o "$RUNS/sensitivity"
step prune "$EDGEPRUNE" prune "$RUNS/dense/best.pth" -s examples/schedules/resnet18_uniform50.yaml \
    -o "$RUNS/pruned.pth"
step fine-tune "$EDGEPRUNE" train "$RUNS/pruned.pth" --data "$DATA" --epochs "$FT_EPOCHS" --batch-size 32 \
    --lr "$FT_LR" --weight-decay 1e-4 -o "$RUNS/finetuned"
step export "$EDGEPRUNE" export "$RUNS/finetuned/best.pth" --data "$DATA" --exporter torchscript \
    -o "$RUNS/pruned.onnx" --openvino "$RUNS/ir"
step export-dense "$EDGEPRUNE" export "$RUNS/dense/best.pth" --data "$DATA" --exporter torchscript \
    -o "$RUNS/dense.onnx" --openvino "$RUNS/ir"
step bench "$EDGEPRUNE" bench "$RUNS/ir/pruned.xml" --niter 50 --threads 2
step bench-dense "$EDGEPRUNE" bench "$RUNS/ir/dense.xml" --niter 50 --threads 2
