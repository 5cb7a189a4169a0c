#!/usr/bin/env bash
# The real-data experiment: ResNet-20 on CIFAR-10, Distiller's two resnet20 AGP filter schedules and a
# schedule suggested by edgeprune's sensitivity analysis, each retrained for EPOCHS epochs on the CPU, then
# exported and measured with OpenVINO. Run from the repository root (after `make setup`):
#
#   examples/cifar10_resnet20/run.sh            # EPOCHS=5, runs/cifar10_resnet20, then RESULTS.md here
#
# Every step resumes: rerun the same command after an interruption. Environment overrides: MODEL (a trained
# resnet20_cifar checkpoint), DATA (CIFAR-10 as a .tar.gz / directory), EPOCHS, LR, RUNS (work directory),
# OUT (where RESULTS.md, results.json and results/ go), DEVICE (auto | cpu | cuda; training only).
set -euo pipefail
HERE=examples/cifar10_resnet20
MODEL=${MODEL:-../shared/models/resnet20_cifar10_jpeg.pth}
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
EPOCHS=${EPOCHS:-5}
LR=${LR:-0.02}
RUNS=${RUNS:-runs/cifar10_resnet20}
OUT=${OUT:-$HERE}
DEVICE=${DEVICE:-auto}
EDGEPRUNE=${EDGEPRUNE:-.venv/bin/edgeprune}
PYTHON=${PYTHON:-.venv/bin/python}
mkdir -p "$RUNS"

# 1. Filter sensitivity of every conv: 0-80 % in steps of 10 %, on 2,000 test images spaced over the split (all
#    ten classes; the table's earlier `suggested` row came from the first 2,000, two classes: results/suggested.yaml).
"$EDGEPRUNE" sensitivity "$MODEL" --data "$DATA" --group filter --sparsities 0:0.9:0.1 \
    --eval-batches 10 --batch-size 200 -o "$RUNS/sensitivity"

# 2. A one-shot schedule with the least summed drop that keeps at most the MACs of Distiller's Leader
#    schedule (24,723,776 / 40,813,184 = 0.6058 of the dense network).
"$EDGEPRUNE" schedule suggest "$RUNS/sensitivity/sensitivity.csv" --model "$MODEL" --target-macs 0.6058 \
    -o "$RUNS/suggested10.yaml"

# 3. Retrain under each schedule: the same epochs, optimizer and LR schedule (SGD, cosine from LR) for all.
declare -A SCHEDULES=([agp]="$HERE/agp_5epochs.yaml" [agp4]="$HERE/agp4_5epochs.yaml"
                      [suggested]="$HERE/results/suggested.yaml" [suggested10]="$RUNS/suggested10.yaml")
for name in agp4 suggested suggested10 agp; do
    "$EDGEPRUNE" train "$MODEL" --data "$DATA" --schedule "${SCHEDULES[$name]}" --epochs "$EPOCHS" \
        --lr "$LR" --weight-decay 1e-4 --device "$DEVICE" -o "$RUNS/$name"
done

# 3b. The same schedules, seed and recipe, retrained with knowledge distillation from the dense model
#     (teacher = the run's dense parent; T 5, weights 0.7 / 0.3 as in Distiller's CIFAR examples): runs/NAME_kd.
for name in suggested10 suggested agp4 agp; do
    "$EDGEPRUNE" train "$MODEL" --data "$DATA" --schedule "${SCHEDULES[$name]}" --epochs "$EPOCHS" \
        --lr "$LR" --weight-decay 1e-4 --device "$DEVICE" -o "$RUNS/${name}_kd" \
        --kd-teacher dense --kd-temp 5 --kd-distill-wt 0.7 --kd-student-wt 0.3
done

# 4. Export each retrained network (and the dense one), measure them interleaved, write RESULTS.md.
"$PYTHON" "$HERE/results.py" --model "$MODEL" --data "$DATA" --runs "$RUNS" --out "$OUT"
