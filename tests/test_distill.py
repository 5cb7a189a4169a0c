"""Knowledge distillation: Distiller's loss by hand, a student that follows its teacher, exact resume, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from edgeprune.data import ImageDataset, channel_stats, load_dataset
from edgeprune.demo.settings import DemoSettings
from edgeprune.distillation import DistillConfig, distill_config
from edgeprune.errors import CheckpointError, ConfigError
from edgeprune.jobs.prune import prune_model
from edgeprune.jobs.train import train_model
from edgeprune.models import create_model
from edgeprune.models.checkpoint import save_checkpoint
from edgeprune.sweep.config import SweepError, load_sweep
from edgeprune.sweep.job import TrialRequest
from edgeprune.sweep.produce import produce
from edgeprune.training import TrainConfig, Trainer
from edgeprune.training.distill import Distillation, combined_loss, dense_parent, distillation_loss, load_teacher
from edgeprune.training.seeding import seed_everything

from .conftest import run_cli
from .test_sweep_config import TEMPLATE
from .test_train import _Interrupt

ARCH_KW = {"in_channels": 1, "num_classes": 10}
SCHEDULE = Path(__file__).resolve().parents[1] / "examples" / "cifar10_resnet20" / "agp_5epochs.yaml"
STUDENT = [[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]]
TEACHER = [[1.0, 0.0, -1.0], [-0.5, 2.5, 1.0]]
LABELS = [0, 2]


def _softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_kd(student: list[list[float]], teacher: list[list[float]], t: float) -> float:
    """KL(softmax(teacher/T) || softmax(student/T)), mean over rows, written out with ``math`` only."""
    total = 0.0
    for s_row, t_row in zip(student, teacher, strict=True):
        p = _softmax([v / t for v in t_row])
        q = _softmax([v / t for v in s_row])
        total += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
    return total / len(student)


def _hand_ce(student: list[list[float]], labels: list[int]) -> float:
    return -sum(math.log(_softmax(row)[y]) for row, y in zip(student, labels, strict=True)) / len(student)


@pytest.mark.parametrize(("t", "dw", "sw"), [(1.0, 0.5, 0.5), (4.0, 0.7, 0.3), (2.5, 1.0, 0.0)])
def test_loss_equals_a_hand_computation(t: float, dw: float, sw: float) -> None:
    s, te, y = torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS)
    ce = torch.nn.functional.cross_entropy(s, y)
    assert float(ce) == pytest.approx(_hand_ce(STUDENT, LABELS), rel=1e-6)
    cfg = DistillConfig(teacher="unused", temperature=t, distill_wt=dw, student_wt=sw)
    overall, distill = combined_loss(ce, s, te, cfg)
    assert float(distill) == pytest.approx(_hand_kd(STUDENT, TEACHER, t), rel=1e-5)  # logged unscaled
    assert float(overall) == pytest.approx(sw * _hand_ce(STUDENT, LABELS) + dw * t * t * _hand_kd(STUDENT, TEACHER, t),
                                           rel=1e-5)
    assert float(distillation_loss(te, te, t)) == pytest.approx(0.0, abs=1e-7)


def test_distillers_defaults() -> None:
    cfg = DistillConfig(teacher="dense")
    assert (cfg.temperature, cfg.distill_wt, cfg.student_wt, cfg.teacher_wt, cfg.start_epoch) == (1.0, 0.5, 0.5, 0, 0)
    assert distill_config(None) is None
    assert distill_config("t.pth", temperature=None, distill_wt=0.7) == DistillConfig("t.pth", distill_wt=0.7)


# ---------------------------------------------------------------------------------------------- fixtures
def _digits(permute: bool = False) -> ImageDataset:
    data = load_dataset("digits", "train")
    if not permute:
        return data
    return ImageDataset(data.images, (data.labels + 1) % 10, list(data.classes), data.name, data.split, data.source)


def _normalize() -> dict[str, list[float]]:
    mean, std = channel_stats(load_dataset("digits", "train"))
    return {"mean": list(mean), "std": list(std)}


def _train(out: Path, data: ImageDataset, epochs: int, seed: int = 0, hooks=()) -> Trainer:
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, device="cpu", progress=False, augment=False, seed=seed)
    seed_everything(seed)
    trainer = Trainer(create_model("resnet20_cifar", **ARCH_KW), data, load_dataset("digits", "test"), cfg, out,
                      arch="resnet20_cifar", arch_kwargs=ARCH_KW, normalize=_normalize(), hooks=list(hooks))
    trainer.fit()
    return trainer


@pytest.fixture(scope="module")
def dense(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-20 trained 2 epochs on the digits (~95 % top-1): the teacher and dense parent."""
    out = tmp_path_factory.mktemp("dense")
    _train(out, _digits(), epochs=2)
    return out / "checkpoint.pth"


def _logits(model: torch.nn.Module, normalize: dict[str, list[float]]) -> torch.Tensor:
    test = load_dataset("digits", "test")
    x = torch.from_numpy(test.images).float().permute(0, 3, 1, 2) / 255.0
    x = (x - torch.tensor(normalize["mean"]).view(1, -1, 1, 1)) / torch.tensor(normalize["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        return model.eval()(x)


# ----------------------------------------------------------------------------------------------- learning
def test_a_student_with_only_the_distillation_loss_learns_its_teachers_outputs(tmp_path) -> None:
    """The teacher learned the labels shifted by one; a student given only its soft targets predicts them too."""
    _train(tmp_path / "liar", _digits(permute=True), epochs=2)
    norm = _normalize()
    teacher = load_teacher(str(tmp_path / "liar" / "checkpoint.pth"), "unused", _digits(), norm)
    labels = torch.from_numpy(load_dataset("digits", "test").labels)
    t_logits = _logits(teacher.model, norm)
    assert float((t_logits.argmax(1) == (labels + 1) % 10).float().mean()) > 0.8  # the teacher is a consistent liar

    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, device="cpu", progress=False, augment=False, seed=3)
    distill = DistillConfig(str(tmp_path / "liar" / "checkpoint.pth"), temperature=2.0, distill_wt=1.0, student_wt=0.0)
    seed_everything(3)
    before = create_model("resnet20_cifar", **ARCH_KW)  # the student's initial weights, seed 3
    kl_before = float(distillation_loss(_logits(before, norm), t_logits, 1.0))
    result, loaded = train_model("resnet20_cifar", "digits", tmp_path / "student", cfg, distill=distill)
    s_logits = _logits(loaded.model, norm)
    assert float(distillation_loss(s_logits, t_logits, 1.0)) < 0.3 * kl_before
    assert float((s_logits.argmax(1) == t_logits.argmax(1)).float().mean()) > 0.8
    assert result.final["top1"] < 20.0  # it learned the teacher, not the (unused) labels


def test_the_teacher_stays_frozen_in_eval_mode(tmp_path, dense) -> None:
    norm = _normalize()
    teacher = load_teacher(str(dense), str(dense), _digits(), norm)
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}  # BN running stats included
    hook = Distillation(teacher, DistillConfig(str(dense)))
    _train(tmp_path / "s", _digits(), epochs=1, seed=1, hooks=[hook])
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())
    for name, value in teacher.model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0, msg=name)
    (row,) = hook.cost
    assert row["images"] == 1438 and 0 < row["teacher_s"] < row["train_s"]
    assert row["images_per_s_without_teacher"] > row["images_per_s"]


def test_distillation_starts_at_its_start_epoch(tmp_path, dense) -> None:
    hook = Distillation(load_teacher(str(dense), str(dense), _digits(), _normalize()),
                        DistillConfig(str(dense), start_epoch=1))
    _train(tmp_path, _digits(), epochs=2, hooks=[hook])
    assert [row["epoch"] for row in hook.cost] == [1]


# ------------------------------------------------------------------------------------------------ resume
def test_resumed_distillation_equals_uninterrupted(tmp_path, dense) -> None:
    """Pruned by a schedule and distilled from its dense parent, interrupted, resumed without --kd options."""
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.02, device="cpu", progress=False, augment=True, seed=5)
    kd = DistillConfig("dense", temperature=3.0, distill_wt=0.7, student_wt=0.3, start_epoch=1)
    straight, _ = train_model(str(dense), "digits", tmp_path / "a", cfg, schedule=SCHEDULE, distill=kd)
    with pytest.raises(KeyboardInterrupt):
        train_model(str(dense), "digits", tmp_path / "b", cfg, schedule=SCHEDULE, distill=kd,
                    hooks=[_Interrupt(epoch=2, step=4)])
    resumed, _ = train_model(str(dense), "digits", tmp_path / "b", cfg, schedule=SCHEDULE,  # --kd-* from checkpoint
                             hooks=[_Interrupt(epoch=99, step=0)])  # the same hooks, in the same order
    a = torch.load(tmp_path / "a" / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pth", weights_only=True)
    for name, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], value, rtol=0, atol=0, msg=name)
    assert [h["top1"] for h in straight.history] == [h["top1"] for h in resumed.history]
    assert "distilled from `" + str(dense) + "` (T 3, distillation weight 0.7, student weight 0.3, from epoch 1)" \
        in (tmp_path / "b" / "report.md").read_text()
    recorded = b["provenance"]["distillation"]
    assert recorded["teacher"]["path"] == str(dense) and recorded["temperature"] == 3.0
    assert recorded["teacher"]["requested"] == "dense" and len(recorded["teacher"]["sha256"]) == 64
    with pytest.raises(CheckpointError, match=r"trained with distillation \(teacher .* T 3.0.*not with .*T 4.0"):
        train_model(str(dense), "digits", tmp_path / "b", TrainConfig(**{**cfg.__dict__, "epochs": 4}),
                    schedule=SCHEDULE, distill=DistillConfig("dense", temperature=4.0, distill_wt=0.7,
                                                             student_wt=0.3, start_epoch=1))
    with pytest.raises(ConfigError, match="trained without distillation; it cannot resume with a teacher"):
        train_model(str(dense), "digits", tmp_path / "plain", TrainConfig(**{**cfg.__dict__, "epochs": 1}))
        train_model(str(dense), "digits", tmp_path / "plain", cfg, distill=kd)


# -------------------------------------------------------------------------------------------- dense parent
def test_dense_is_the_parent_a_pruned_checkpoint_records(tmp_path, dense) -> None:
    assert dense_parent(str(dense)) == dense  # not pruned: the run prunes it, it teaches
    pruned = prune_model(str(dense), SCHEDULE, tmp_path / "pruned.pth")  # epoch 0 of the schedule
    assert dense_parent(str(pruned.out)) == dense
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.01, device="cpu", progress=False)
    train_model(str(pruned.out), "digits", tmp_path / "tuned", cfg)  # fine-tuned pruned child: no schedule itself
    assert dense_parent(str(tmp_path / "tuned" / "checkpoint.pth")) == dense
    (tmp_path / "pruned.pth").rename(tmp_path / "moved.pth")
    with pytest.raises(ConfigError, match=r"records its parent '.*pruned.pth', which is not a checkpoint file here"):
        dense_parent(str(tmp_path / "tuned" / "checkpoint.pth"))


def test_dense_needs_a_checkpoint() -> None:
    with pytest.raises(ConfigError, match="'resnet20_cifar' is not a checkpoint, so this run has no trained dense "
                                          "parent"):
        dense_parent("resnet20_cifar")


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("options", "message"), [
    ({"distill_wt": -0.5}, r"must be finite and not negative, got --kd-distill-wt -0.5"),
    ({"student_wt": -1.0, "distill_wt": 1.0}, r"not negative, got --kd-student-wt -1.0"),
    ({"distill_wt": 0.0, "student_wt": 0.0}, r"sum to zero \(--kd-distill-wt 0, --kd-student-wt 0\)"),
    ({"teacher_wt": 0.2}, r"--kd-teacher-wt 0.2: the teacher is frozen"),
    ({"temperature": 0.0}, r"--kd-temp must be a positive number, got 0.0"),
    ({"start_epoch": -1}, r"--kd-start-epoch must be 0 or later, got -1"),
])
def test_bad_weights_and_options_are_refused(options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        DistillConfig(teacher="dense", **options)


def test_kd_options_without_a_teacher_are_refused() -> None:
    with pytest.raises(ConfigError, match="--kd-temp, --kd-student-wt given without --kd-teacher"):
        distill_config(None, temperature=4.0, student_wt=0.2, distill_wt=None)


def _teacher_file(path: Path, *, num_classes: int = 10, in_channels: int = 1, input_shape=(1, 8, 8),
                  normalize: dict | None = None, classes: list[str] | None = None) -> str:
    model = create_model("resnet20_cifar", num_classes=num_classes, in_channels=in_channels)
    dataset = {"input_shape": list(input_shape)} if input_shape else {}
    if classes:
        dataset["classes"] = classes
    save_checkpoint(path, model, arch="resnet20_cifar", arch_kwargs={"num_classes": num_classes,
                                                                      "in_channels": in_channels},
                    dataset=dataset, normalize=normalize if normalize is not None else _normalize())
    return str(path)


@pytest.mark.parametrize(("teacher", "message"), [
    ({"num_classes": 100}, r"predicts 100 classes but the student learns the 10 classes of 'digits'"),
    ({"input_shape": (3, 32, 32), "in_channels": 3},
     r"was trained on inputs of shape \(3, 32, 32\), but the student trains on 'digits' with inputs of shape "
     r"\(1, 8, 8\)"),
    ({"input_shape": None, "in_channels": 3}, r"cannot take the student's inputs of shape \(1, 8, 8\)"),
    ({"normalize": {"mean": [0.5], "std": [0.5]}}, r"was trained with normalisation mean \[0.5\], std \[0.5\], but "
                                                   r"the student's batches are normalised with mean \[0.3"),
    ({"classes": [str(9 - i) for i in range(10)]}, r"was trained on classes \['9', '8'"),
])
def test_a_teacher_that_does_not_fit_is_refused_before_the_first_batch(tmp_path, teacher, message) -> None:
    path = _teacher_file(tmp_path / "teacher.pth", **teacher)
    cfg = TrainConfig(epochs=1, batch_size=64, device="cpu", progress=False)
    with pytest.raises(ConfigError, match=message):
        train_model("resnet20_cifar", "digits", tmp_path / "run", cfg, distill=DistillConfig(path))
    assert not (tmp_path / "run" / "checkpoint.pth").exists()  # nothing trained


def test_a_missing_teacher(tmp_path) -> None:
    with pytest.raises(ConfigError, match="Teacher checkpoint '.*nope.pth' does not exist"):
        load_teacher(str(tmp_path / "nope.pth"), "unused", _digits(), _normalize())


def test_cli_train_refuses_a_teacher_weight(tmp_path) -> None:
    r = run_cli("train", "resnet20_cifar", "--epochs", "1", "-o", str(tmp_path), "--kd-teacher", "dense",
                "--kd-teacher-wt", "0.3")
    assert r.returncode == 2 and "--kd-teacher-wt 0.3: the teacher is frozen" in r.stderr
    assert "Leave --kd-teacher-wt at 0" in r.stderr


# ------------------------------------------------------------------------------------------------- sweeps
SWEEP = """\
method: random
metric: {name: top1, goal: maximize}
parameters:
  sparsity: {values: [0.25, 0.5]}
model: MODEL
schedule_template: template.yaml
retrain: {epochs: 1, batch_size: 64, lr: 0.01, RETRAIN}
"""


def _sweep(tmp_path: Path, model: str, retrain: str):
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "sweep.yaml").write_text(SWEEP.replace("MODEL", model).replace("RETRAIN", retrain))
    return load_sweep(tmp_path / "sweep.yaml")


def test_a_sweeps_retrain_section_takes_the_kd_options(tmp_path, dense) -> None:
    cfg = _sweep(tmp_path, str(dense), "kd_teacher: dense, kd_temp: 5, kd_distill_wt: 0.7, kd_student_wt: 0.3")
    assert cfg.retrain.distill() == DistillConfig("dense", temperature=5.0, distill_wt=0.7, student_wt=0.3)
    assert _sweep(tmp_path, str(dense), "momentum: 0.9").retrain.distill() is None
    (tmp_path / "teacher.pth").write_bytes(dense.read_bytes())
    cfg = _sweep(tmp_path, str(dense), "kd_teacher: teacher.pth")  # a path relative to the sweep file
    assert cfg.retrain.kd_teacher == str(tmp_path / "teacher.pth")


@pytest.mark.parametrize(("retrain", "message"), [
    ("kd_teacher: dense, kd_distill_wt: -1", r"sweep.yaml:7:\d+: retrain.kd_distill_wt: .*not negative, got "
                                             r"kd_distill_wt -1"),
    ("kd_teacher: dense, kd_distill_wt: 0, kd_student_wt: 0", r"retrain.kd_distill_wt: .*sum to zero"),
    ("kd_temp: 4", r"retrain.kd_temp: kd_temp given without kd_teacher"),
    ("kd_teacher: nope.pth", r"retrain.kd_teacher: the teacher checkpoint '.*nope.pth' does not exist"),
    ("kd_teacher: dense, kd_teachr_wt: 0", r"kd_teachr_wt.*kd_teacher_wt"),
])
def test_a_sweeps_bad_kd_options_are_located(tmp_path, dense, retrain, message) -> None:
    with pytest.raises(SweepError, match=message):
        _sweep(tmp_path, str(dense), retrain)


def test_a_sweep_refuses_an_untrained_dense_teacher(tmp_path) -> None:
    with pytest.raises(SweepError, match="retrain.kd_teacher: kd_teacher: dense would distil from 'resnet20_cifar' "
                                         "with its untrained initial weights"):
        _sweep(tmp_path, "resnet20_cifar", "kd_teacher: dense")


def test_a_sweep_trial_retrains_distilled_from_its_dense_parent(tmp_path, dense) -> None:
    pytest.importorskip("onnxruntime", reason="a trial exports and checks ONNX: pip install 'edgeprune[sweep]'")
    cfg = _sweep(tmp_path, str(dense), "kd_teacher: dense, kd_temp: 4")
    request = TrialRequest(study_name="kd", trial_number=0, values={"sparsity": 0.5}, template=TEMPLATE,
                           model=str(dense), data="digits", retrain=cfg.retrain, export=cfg.export,
                           benchmark=cfg.benchmark, out_dir=str(tmp_path / "trial"))
    job = produce(request)
    recorded = torch.load(job.checkpoint, weights_only=True)["provenance"]["distillation"]
    assert recorded["teacher"]["path"] == str(dense) and recorded["temperature"] == 4.0
    assert recorded["teacher"]["requested"] == "dense" and job.metrics["top1"] > 50


# --------------------------------------------------------------------------------------------------- demo
def test_the_demos_sweep_retrains_distilled_from_the_dense_baseline(tmp_path) -> None:
    kd = distill_config("dense", temperature=4.0, switch="--kd")
    section = DemoSettings(distill=kd).retrain()
    doc = SWEEP.replace("MODEL", "resnet20_cifar").replace("RETRAIN", ", ".join(
        f"{k}: {v}" for k, v in section.items() if k.startswith("kd_")))
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "sweep.yaml").write_text(doc.replace("model: resnet20_cifar", "model: resnet20_cifar\n"
                                                     "pretrain: {epochs: 1}"))
    assert load_sweep(tmp_path / "sweep.yaml").retrain.distill() == kd  # the sweep file reads back the same
    assert "distill" not in DemoSettings().to_dict()  # earlier demo directories continue
    assert DemoSettings(distill=kd).to_dict()["distill"]["teacher"] == "dense"
    r = run_cli("demo", "-o", str(tmp_path / "d"), "--kd-temp", "4")
    assert r.returncode == 2 and "--kd-temp given without --kd: there is nothing to distil from" in r.stderr
    assert not (tmp_path / "d").exists()
