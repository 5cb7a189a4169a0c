"""Training loop: learning on real (bundled) data, exact resume, hooks order, CLI jobs and errors."""

from __future__ import annotations

import io
import json

import pytest
import torch
from rich.console import Console

from edgeprune.data import channel_stats, load_dataset
from edgeprune.errors import CheckpointError, ConfigError
from edgeprune.jobs.train import evaluate_model, train_model
from edgeprune.models import create_model
from edgeprune.training import TrainConfig, Trainer, TrainingHooks
from edgeprune.training.seeding import seed_everything

from .conftest import run_cli, shared_file

NORMALIZE = {"mean": [0.3], "std": [0.35]}


def _trainer(out_dir, epochs: int, hooks=(), **cfg) -> Trainer:
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    config = TrainConfig(**{"epochs": epochs, "batch_size": 64, "lr": 0.05, "device": "cpu", "progress": False,
                            "augment": False} | cfg)
    seed_everything(config.seed)
    model = create_model("resnet20_cifar", in_channels=1, num_classes=10)
    return Trainer(model, train, test, config, out_dir, arch="resnet20_cifar",
                   arch_kwargs={"in_channels": 1, "num_classes": 10}, normalize=NORMALIZE, hooks=list(hooks))


def test_one_epoch_on_digits_beats_chance_by_far(tmp_path) -> None:
    result = _trainer(tmp_path, epochs=1).fit()
    assert result.final["top1"] > 60.0  # chance is 10 %
    assert (tmp_path / "checkpoint.pth").exists() and (tmp_path / "best.pth").exists()


class _Interrupt(TrainingHooks):
    """Simulates Ctrl-C in the middle of an epoch."""

    def __init__(self, epoch: int, step: int) -> None:
        self.at = (epoch, step)

    def on_minibatch_begin(self, epoch, step, steps_per_epoch, optimizer):
        if (epoch, step) == self.at:
            raise KeyboardInterrupt


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path) -> None:
    straight = _trainer(tmp_path / "a", epochs=3)
    straight.fit()
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "b", epochs=3, hooks=[_Interrupt(epoch=2, step=5)]).fit()
    resumed = _trainer(tmp_path / "b", epochs=3)
    assert resumed.resume() and resumed.start_epoch == 2
    resumed.fit()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert [h["top1"] for h in straight.history] == [h["top1"] for h in resumed.history]


class _Recorder(TrainingHooks):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_epoch_begin(self, epoch, model, optimizer):
        self.calls.append(f"epoch_begin {epoch}")

    def on_minibatch_begin(self, epoch, step, steps_per_epoch, optimizer):
        if step == 0:
            self.calls.append("minibatch_begin")

    def before_backward_pass(self, epoch, step, steps_per_epoch, loss, optimizer):
        if step == 0:
            self.calls.append("before_backward")
        return loss * 0.0 + loss  # a hook may replace the loss

    def before_parameter_optimization(self, epoch, step, steps_per_epoch, optimizer):
        if step == 0:
            grads = [p.grad for p in optimizer.param_groups[0]["params"] if p.grad is not None]
            self.calls.append(f"before_step grads={bool(grads)}")

    def on_minibatch_end(self, epoch, step, steps_per_epoch, optimizer):
        if step == 0:
            self.calls.append("minibatch_end")

    def on_epoch_end(self, epoch, optimizer, metrics):
        self.calls.append(f"epoch_end {sorted(metrics)}")

    def state_dict(self):
        return {"calls": list(self.calls)}

    def load_state_dict(self, state):
        self.calls = list(state["calls"])


def test_hooks_are_called_in_distillers_order_and_their_state_resumes(tmp_path) -> None:
    hook = _Recorder()
    _trainer(tmp_path, epochs=1, hooks=[hook]).fit()
    assert hook.calls == ["epoch_begin 0", "minibatch_begin", "before_backward", "before_step grads=True",
                          "minibatch_end", "epoch_end ['loss', 'top1', 'top5']"]
    again = _Recorder()
    trainer = _trainer(tmp_path, epochs=1, hooks=[again])
    trainer.resume()
    assert again.calls == hook.calls


def test_the_progress_bar_is_drawn_only_where_it_shows(tmp_path) -> None:
    """Transient, it never shows in a log file or pipe, but Rich rendered it 10×/s there (4 % of the loop's CPU)."""
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    shown = {}
    for name, console in (("log", Console(file=io.StringIO())), ("shell", Console(file=io.StringIO(),
                                                                                 force_terminal=True))):
        trainer = Trainer(create_model("resnet20_cifar", in_channels=1), train, test, TrainConfig(progress=True),
                          tmp_path, arch="resnet20_cifar", normalize=NORMALIZE, console=console)
        with trainer._progress() as progress:
            shown[name] = progress is not None
    assert shown == {"log": False, "shell": True}


def test_resume_refuses_a_foreign_checkpoint(tmp_path) -> None:
    torch.save(create_model("resnet20_cifar").state_dict(), tmp_path / "checkpoint.pth")
    with pytest.raises(CheckpointError, match="not a resumable edgeprune training checkpoint"):
        _trainer(tmp_path, epochs=1).resume()


def test_bad_training_options() -> None:
    with pytest.raises(ConfigError, match="Unknown optimizer 'sgdd'"):
        TrainConfig(optimizer="sgdd")
    with pytest.raises(ConfigError, match="CUDA is not available|Unknown device"):
        _trainer("unused", epochs=1, device="cuda:7" if not torch.cuda.is_available() else "tpu")


def test_train_and_eval_jobs_with_adam(tmp_path) -> None:
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.003, optimizer="adam", device="cpu", progress=False)
    result, loaded = train_model("resnet20_cifar", "digits", tmp_path, cfg)
    assert loaded.model.conv1.in_channels == 1  # built for the data's channels
    ev = evaluate_model(str(tmp_path / "checkpoint.pth"), "digits")
    assert ev.images == 359 and ev.metrics["top1"] == pytest.approx(result.final["top1"])
    history = json.loads((tmp_path / "history.json").read_text())
    assert history[-1]["top1"] == pytest.approx(ev.metrics["top1"])
    mean, std = channel_stats(load_dataset("digits", "train"))
    assert ev.normalize == {"mean": pytest.approx(list(mean)), "std": pytest.approx(list(std))}


def test_holdout_validates_on_training_images_the_run_never_trains_on(tmp_path) -> None:
    proc = run_cli("train", "resnet20_cifar", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--lr",
                   "0.05", "--holdout", "300", "-o", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    # the held-out images are the 300 spread over the training split: what `eval --split train --spread` takes
    held = evaluate_model(str(tmp_path / "run" / "checkpoint.pth"), "digits", split="train", limit=300, spread=True)
    assert held.images == 300 and history[-1]["top1"] == pytest.approx(held.metrics["top1"])
    test = evaluate_model(str(tmp_path / "run" / "checkpoint.pth"), "digits")
    assert test.images == 359 and test.metrics["top1"] != pytest.approx(held.metrics["top1"])
    too_many = run_cli("train", "resnet20_cifar", "--data", "digits", "--epochs", "1", "--holdout", "5000", "-o",
                       str(tmp_path / "bad"))
    said = " ".join(too_many.stderr.split())
    assert too_many.returncode != 0 and "Traceback" not in said and "Cannot hold out 5000 of the" in said


def test_eval_rejects_a_model_with_the_wrong_number_of_classes(tmp_path) -> None:
    with pytest.raises(ConfigError, match="predicts 100 classes but data 'digits'"):
        from edgeprune.models.checkpoint import save_checkpoint

        save_checkpoint(tmp_path / "c100.pth", create_model("resnet20_cifar", num_classes=100, in_channels=1),
                        arch="resnet20_cifar", arch_kwargs={"num_classes": 100, "in_channels": 1})
        evaluate_model(str(tmp_path / "c100.pth"), "digits")


def test_cli_errors_are_one_paragraph_and_nonzero(tmp_path) -> None:
    missing = run_cli("eval", "resnet20_cifar", "--data", str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "nowhere" in missing.stderr
    bad_ckpt = tmp_path / "bad.pth"
    bad_ckpt.write_bytes(b"\x80\x02garbage")
    corrupt = run_cli("eval", str(bad_ckpt), "--data", "digits")
    assert corrupt.returncode == 2 and "could not be read" in corrupt.stderr and "Traceback" not in corrupt.stderr


@pytest.mark.slow
def test_shared_resnet20_checkpoint_reaches_its_recorded_top1() -> None:
    ckpt_path = shared_file("models/resnet20_cifar10_jpeg.pth")
    data = shared_file("data/cifar10-jpeg.tar.gz")
    recorded = torch.load(ckpt_path, weights_only=True)["top1"]
    result = evaluate_model(str(ckpt_path), str(data), device="cpu")
    assert result.images == 10_000
    assert result.metrics["top1"] == pytest.approx(recorded, abs=0.3)


@pytest.mark.slow
def test_eval_spread_takes_every_class_where_the_first_images_are_one_or_two() -> None:
    """CIFAR-10's JPEG tarball lists its test images class by class: the first 2,000 are two classes."""
    ckpt, data = shared_file("models/resnet20_cifar10_jpeg.pth"), shared_file("data/cifar10-jpeg.tar.gz")
    runs = {}
    for flags in ([], ["--spread"]):
        proc = run_cli("eval", str(ckpt), "--data", str(data), "--limit", "2000", *flags, "--json", timeout=600)
        assert proc.returncode == 0, proc.stderr
        runs[bool(flags)] = json.loads(proc.stdout)
    recorded = torch.load(ckpt, weights_only=True)["top1"]  # on all 10,000
    assert runs[False]["images"] == runs[True]["images"] == 2000
    assert abs(runs[True]["top1"] - recorded) < 1.5 < abs(runs[False]["top1"] - recorded)


def test_eval_spread_without_limit_is_refused() -> None:
    proc = run_cli("eval", "resnet20_cifar", "--data", "digits", "--spread")
    assert proc.returncode == 2 and "give --limit too" in proc.stderr
