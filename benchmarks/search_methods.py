"""Greedy widths (``edgeprune search``) against uniform widths and a MAC-targeted suggestion, at the same
measured latency budget.

For each budget (a fraction of the dense model's latency), three networks, each tightened until it *measures*
under the budget. "Under the budget" is judged by ``Target.latency_ratio``: the network's latency as a fraction
of the dense network's, the two timed in alternating rounds, so that a slow phase of a shared machine (they last
seconds and shift the level by up to 1.5x) slows both alike instead of moving the budget:

* **greedy** — ``edgeprune search``'s widths, chosen on the fitted latency model;
* **uniform-internal** — the issue's method (b): one Distiller L1 filter pruner on every block-internal conv (a
  unit of one conv, which no residual stream reads), the residual streams kept dense, at the lowest sparsity (in
  steps of 0.02) whose network measures under the budget; its widths are not aligned to the search's grid;
* **uniform-all** — every unit at the same fraction of its width, residual streams included (a stronger
  baseline than (b) on this network);
* **suggested** (with ``--sensitivity CSV``) — ``edgeprune schedule suggest --target-macs M`` from a filter
  sensitivity analysis, at the largest M (in steps of 0.02 from the budget's fraction down) whose network
  measures under the budget: what a user without a latency search would do.

Then all are measured again, three passes interleaved, each network paired with the dense one (the ratio
reported is the middle pass), evaluated on the test set right after pruning, and — with ``--finetune-epochs N``
— after N epochs of the same fine-tuning recipe.
With ``--holdout N`` every network is fine-tuned on the training images less N held out (as ``edgeprune search``
fine-tunes), and ``search-pick`` is what the search returns: of the greedy and the uniform-all network, the one
with the better top-1 on the held-out images.

    python benchmarks/search_methods.py --model ../shared/models/resnet20_cifar10_jpeg.pth \\
        --data ../shared/data/cifar10-jpeg.tar.gz [--sensitivity runs/…/sensitivity.csv] [--budgets 0.75 0.6] \\
        [--finetune-epochs 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tempfile
from pathlib import Path

from edgeprune.analysis.suggest import FilterPrunerSpec, one_shot_filter_schedule, suggest_schedule
from edgeprune.budget_search.greedy import greedy_path, uniform_widths
from edgeprune.budget_search.importance import LossOracle
from edgeprune.budget_search.latency import LatencyTable
from edgeprune.budget_search.predict import LatencyModel
from edgeprune.budget_search.space import build_space, render_widths_schedule
from edgeprune.data import BatchLoader, evenly_spaced, hold_out, load_dataset
from edgeprune.jobs.export import export_model
from edgeprune.jobs.inputs import load_model_for_data, normalization_for
from edgeprune.jobs.prune import prune_model
from edgeprune.jobs.train import evaluate_model, train_model
from edgeprune.measurement.environment import environment
from edgeprune.measurement.target import Target
from edgeprune.training.loop import TrainConfig

HEDGES = [1.0 - 0.015 * i for i in range(24)]
MAC_STEP = 0.02
SPARSITY_STEP = 0.02


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.75, 0.6])
    p.add_argument("--finetune-epochs", type=int, default=0)
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--calibration", type=int, default=6)
    p.add_argument("--cache", default=None)
    p.add_argument("--sensitivity", type=Path, default=None, help="a filter sensitivity CSV: adds `suggested`")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--holdout", type=int, default=0,
                   help="fine-tune every network on the training images less N held out, as edgeprune search does, "
                        "and report which of greedy and uniform-all the search would pick by top-1 on them")
    p.add_argument("--methods", nargs="+", default=None, choices=["greedy", "uniform-internal", "uniform-all",
                                                                  "suggested"], help="run only these methods")
    args = p.parse_args()
    target = Target()
    train = load_dataset(args.data, "train")
    loaded = load_model_for_data(args.model, train)
    model = loaded.model.eval()
    space = build_space(model)
    table = LatencyTable(target, args.cache)
    table.measure(space.all_kernels())
    work = Path(tempfile.mkdtemp(prefix="search-methods-"))
    print(f"every network's schedule, checkpoint and ONNX file goes under {work}")
    cache: dict[str, dict] = {}

    def network(widths: dict[str, int]) -> dict:
        return pruned_network("-".join(str(widths[u.name]) for u in space.units),
                              render_widths_schedule(space, widths, loaded.arch))

    def pruned_network(tag: str, schedule: str) -> dict:
        if tag not in cache:
            d = work / tag
            d.mkdir(parents=True, exist_ok=True)
            (d / "schedule.yaml").write_text(schedule)
            pruned = prune_model(args.model, d / "schedule.yaml", d / "pruned.pth", data=args.data)
            export_model(str(pruned.out), d / "model.onnx", exporter="torchscript")
            cache[tag] = {"dir": d, "ckpt": str(pruned.out), "macs": pruned.after.macs,
                          "ms": target.latency_ms(d / "model.onnx")}
        return cache[tag]

    def meets(net: dict, fraction: float) -> bool:
        """Whether ``net`` measures within ``fraction`` of the dense network, measured paired with it."""
        if "ratio" not in net:
            net["ratio"] = target.latency_ratio(net["dir"] / "model.onnx", dense["dir"] / "model.onnx")
        return net["ratio"] <= fraction

    rng = random.Random(0)
    calibration = [space.dense, space.narrowest] + [{u.name: rng.choice(u.options) for u in space.units}
                                                    for _ in range(args.calibration - 2)]
    latency = LatencyModel.fit(space, table, [(w, network(w)["ms"]) for w in calibration])
    dense = network(space.dense)
    dense_ms = dense["ms"]
    norm = normalization_for(loaded, train)
    loss_source = hold_out(train, args.holdout)[0] if args.holdout else train
    batches = BatchLoader(evenly_spaced(loss_source, 1024), 128, shuffle=False, augment=False, mean=norm["mean"],
                          std=norm["std"])
    oracle = LossOracle(model, loaded.arch, batches, space)
    internal = [f"{u.name}.weight" for u in space.units if len(u.members) == 1]
    choose = {"greedy": lambda ms: greedy_path(space, latency, oracle, [ms])[0],
              "uniform-all": lambda ms: uniform_widths(space, latency, ms)}
    methods = args.methods or ["greedy", "uniform-internal", "uniform-all", "suggested"]
    choose = {name: pick for name, pick in choose.items() if name in methods}
    rows = []
    for fraction in args.budgets:
        budget = fraction * dense_ms
        if args.sensitivity is not None and "suggested" in methods:
            rows += suggested(args, loaded.arch, fraction, budget, pruned_network, meets)
        if "uniform-internal" in methods:
            rows += uniform_internal(internal, loaded.arch, fraction, budget, pruned_network, meets)
        for method, pick in choose.items():
            widths = None
            for hedge in HEDGES:  # the widest choice whose network measures under the budget
                choice = pick(budget * hedge)
                if choice is None:
                    break
                widths = choice
                if meets(network(widths), fraction):
                    break
            if widths is None:
                print(f"{fraction:.2f}x {method}: nothing on the grid is predicted under the budget")
                continue
            net = network(widths)
            if not meets(net, fraction):
                print(f"{fraction:.2f}x {method}: no choice down to {HEDGES[-1]:.2f} of the budget measured under it")
                continue
            rows.append({"budget": fraction, "budget_ms": budget, "method": method, "widths": widths,
                         "macs": net["macs"], "estimated_loss": oracle(widths), "ckpt": net["ckpt"],
                         "dir": str(net["dir"])})
    for _ in range(3):  # interleaved re-measurement of every chosen network, each paired with the dense one
        for r in rows:
            r.setdefault("ms", []).append(target.latency_ms(Path(r["dir"]) / "model.onnx"))
            r.setdefault("ratios", []).append(target.latency_ratio(Path(r["dir"]) / "model.onnx",
                                                                   dense["dir"] / "model.onnx"))
    for r in rows:
        r["measured_ms"] = min(r.pop("ms"))
        r["ratio"] = sorted(r["ratios"])[len(r["ratios"]) // 2]
        r["top1_pruned"] = evaluate_model(r["ckpt"], args.data, limit=args.eval_limit, spread=True).metrics["top1"]
        if args.finetune_epochs:
            result, _ = train_model(r["ckpt"], args.data, Path(r["dir"]) / "ft", TrainConfig(
                epochs=args.finetune_epochs, lr=0.01, weight_decay=1e-4, progress=False, holdout=args.holdout))
            if args.holdout:  # validated on the held-out images: the test split is evaluated apart
                r["top1_heldout"] = result.final["top1"]
                r["top1_finetuned"] = evaluate_model(str(Path(r["dir"]) / "ft" / "checkpoint.pth"), args.data,
                                                     limit=args.eval_limit, spread=True).metrics["top1"]
            else:
                r["top1_finetuned"] = result.final["top1"]
    dense_top1 = evaluate_model(args.model, args.data, limit=args.eval_limit, spread=True).metrics["top1"]
    print(f"dense: {dense_ms:.4g} ms, top-1 {dense_top1:.2f}; the greedy search measured the loss of "
          f"{oracle.measured_now} configurations")
    for fraction in args.budgets:  # what edgeprune search returns: of its greedy and uniform networks, the one
        # with the better top-1 on the held-out images
        pair = [r for r in rows if r["budget"] == fraction and r["method"] in ("greedy", "uniform-all")
                and "top1_heldout" in r]
        if len(pair) == 2:
            pick = max(pair, key=lambda r: r["top1_heldout"])
            rows.append({**pick, "method": "search-pick", "picked": pick["method"]})
    for r in rows:
        tuned = f", fine-tuned {r['top1_finetuned']:.2f}" if "top1_finetuned" in r else ""
        if "top1_heldout" in r:
            tuned += f" (held-out {r['top1_heldout']:.2f})" + (f", picked {r['picked']}" if "picked" in r else "")
        loss = f", estimated loss {r['estimated_loss']:.3f}" if r.get("estimated_loss") is not None else ""
        print(f"{r['budget']:.2f}x ({r['budget_ms']:.4g} ms) {r['method']:9s} measured {r['measured_ms']:.4g} ms, "
              f"{r['ratio']:.3f}x of the dense one paired ({r['ratio'] / r['budget']:.3f} of the budget; passes "
              f"{', '.join(f'{x:.3f}' for x in r['ratios'])}), {r['macs']:,} MACs{loss}, "
              f"top-1 pruned {r['top1_pruned']:.2f}{tuned}")
    if args.json:
        args.json.write_text(json.dumps({"environment": environment(), "dense_ms": dense_ms, "dense_top1": dense_top1,
                                         "greedy_loss_measurements": oracle.measured_now, "rows": rows},
                                        indent=1, default=str))


def suggested(args: argparse.Namespace, arch: str, fraction: float, budget: float, pruned_network,
              meets) -> list[dict]:
    """``schedule suggest --target-macs M`` at the largest M (from ``fraction`` down) that measures under budget."""
    target = fraction
    while target > MAC_STEP:
        suggestion = suggest_schedule(args.sensitivity, args.model, target_macs=round(target, 4), arch=arch)
        tag = "suggested-" + hashlib.sha1(suggestion.yaml.encode()).hexdigest()[:10]
        net = pruned_network(tag, suggestion.yaml)
        if meets(net, fraction):
            return [{"budget": fraction, "budget_ms": budget, "method": "suggested", "target_macs": round(target, 4),
                     "macs": net["macs"], "ckpt": net["ckpt"], "dir": str(net["dir"])}]
        target -= MAC_STEP
    print(f"{fraction:.2f}x suggested: no MAC target measured under the budget")
    return []


def uniform_internal(weights: list[str], arch: str, fraction: float, budget: float, pruned_network,
                     meets) -> list[dict]:
    """The issue's (b): one L1 filter pruner on ``weights``, at the lowest sparsity (in steps of
    ``SPARSITY_STEP``) whose network measures under the budget."""
    for step in range(1, round(1 / SPARSITY_STEP)):
        sparsity = round(step * SPARSITY_STEP, 4)
        schedule = one_shot_filter_schedule([FilterPrunerSpec("uniform_internal", sparsity, weights)], arch, None,
                                            [f"Uniform L1 filter pruning of every block-internal conv at {sparsity}"])
        net = pruned_network(f"uniform-internal-{sparsity}", schedule)
        met = meets(net, fraction)
        print(f"{fraction:.2f}x uniform-internal: sparsity {sparsity} measures {net['ratio']:.3f}x the dense network")
        if met:
            return [{"budget": fraction, "budget_ms": budget, "method": "uniform-internal", "sparsity": sparsity,
                     "macs": net["macs"], "ckpt": net["ckpt"], "dir": str(net["dir"])}]
    print(f"{fraction:.2f}x uniform-internal: no sparsity measured under the budget")
    return []


if __name__ == "__main__":
    main()
