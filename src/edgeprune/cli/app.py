"""The Typer application, the two consoles and the options several command groups share."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from edgeprune.errors import EdgepruneError
from edgeprune.signals import exit_now

app = typer.Typer(
    name="edgeprune", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
    help="Prune, thin, retrain, export and measure convolutional networks for edge devices.",
)


class _Stdout(Console):
    """Standard output. Piped or redirected (``| less``, ``> file``) no terminal width applies, so tables print
    at their full width instead of truncating names at 80 columns; ``COLUMNS`` still sets a width."""

    @property
    def size(self):  # type: ignore[override]
        size = super().size
        if self.is_terminal or os.environ.get("COLUMNS", "").isdigit():
            return size
        return size._replace(width=10_000)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


out = _Stdout()
err = Console(stderr=True)

ModelArg = Annotated[str, typer.Argument(help="Zoo name, package.module:factory, or a checkpoint file.")]
DataOpt = Annotated[str, typer.Option("--data", "-d", help="'digits' (built in), or a CIFAR/MNIST/image-folder "
                                                            "directory or .tar.gz; options: PATH?size=224&per_class=N")]
ArchOpt = Annotated[str | None, typer.Option("--arch", help="Architecture of a checkpoint that does not name it.")]
ScheduleOpt = Annotated[Path | None, typer.Option("--schedule", "-s", help="Distiller-format compression schedule.")]
KdTempOpt = Annotated[float | None, typer.Option("--kd-temp", "--kd-temperature",
                                                 help="Distillation softmax temperature T [default: 1].")]
KdDistillWtOpt = Annotated[float | None, typer.Option("--kd-distill-wt", "--kd-dw", help="Weight of the distillation "
                                                      "loss (student vs teacher soft targets, × T²) [default: 0.5].")]
KdStudentWtOpt = Annotated[float | None, typer.Option("--kd-student-wt", "--kd-sw", help="Weight of the student's "
                                                      "loss against the labels [default: 0.5].")]
KdStartOpt = Annotated[int | None, typer.Option("--kd-start-epoch", help="First epoch that distils [default: 0].")]


QueueOpt = Annotated[str | None, typer.Option("--queue", help="sqlite:///PATH/queue.db (default runs/agents/queue.db)"
                                              " or redis://HOST:6379/0[?prefix=NAME] for several machines.")]
AgentStorageOpt = Annotated[str | None, typer.Option("--storage", help="Study storage: postgresql://USER@HOST/DB or "
                                                     "redis://HOST:6379/0 (default sqlite:///runs/agents/study.db).")]
ArtifactsOpt = Annotated[str | None, typer.Option("--artifacts", help="Artifact store: a directory every machine "
                                                  "mounts at the same path (default runs/agents/artifacts) or "
                                                  "redis://HOST:6379/0[?ttl_s=S&max_mb=MB].")]
WorkDirOpt = Annotated[Path | None, typer.Option("--work-dir", help="Local files of this agent (default "
                                                                    "runs/agents).")]
AgentNameOpt = Annotated[str | None, typer.Option("--name", help="This agent's name (default HOST:PID).")]
SweepsOpt = Annotated[list[str] | None, typer.Option("--sweep", help="Serve only this registered sweep (repeat for "
                                                                     "several; default: all).")]


def agent_storage(storage: str | None) -> str:
    from edgeprune.agents.queue import DEFAULT_DIR
    from edgeprune.sweep.storage import default_url

    return storage or default_url(DEFAULT_DIR)


def input_shape_of_text(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected C,H,W such as 3,32,32, got {text!r}") from None


def exit_interrupted() -> NoReturn:
    """Exit 130 without the interpreter's seconds-long teardown (see edgeprune.signals.exit_now)."""
    exit_now(130)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False)  # brackets are text, not markup


TRAINING_STACK = ("torch", "sklearn", "matplotlib")  # the `train` extra


def _missing_training_stack(exc: ModuleNotFoundError) -> None:
    """A command that needs the training stack, run on a measuring host's install: say so instead of a traceback."""
    if (exc.name or "").split(".")[0] not in TRAINING_STACK:
        raise exc
    err.print("[bold red]error:[/] " + escape(f"this command needs {exc.name!r}, part of the training stack, which "
                                              "this install does not have (`edgeprune[consumer]` measures: `agent "
                                              "consumer` and `bench` of .onnx/.xml files)."), highlight=False)
    err.print("pip install torch==2.13.0 && pip install 'edgeprune[train]'", highlight=False, markup=False)
    sys.exit(2)


def main() -> None:
    """The console script: user errors become one paragraph and an exit code, warnings one line each."""
    warnings.showwarning = _show_warning
    try:
        app()
    except EdgepruneError as exc:
        err.print("[bold red]error:[/] " + escape(exc.message), highlight=False)  # brackets are text, not markup
        if exc.hint:
            err.print(exc.hint, highlight=False, markup=False)  # e.g. pip install 'edgeprune[export]'
        sys.exit(exc.exit_code)
    except ModuleNotFoundError as exc:
        _missing_training_stack(exc)
    except OSError as exc:
        _unusable_path(exc)


def _unusable_path(exc: OSError) -> None:
    """A path the system refused (a missing parent, no permission, a full or read-only disk): the user's to fix,
    so one paragraph naming the path, not a traceback. An OSError without a path is not that: it is re-raised."""
    if exc.filename is None:
        raise exc
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    err.print("[bold red]error:[/] " + escape(f"{paths}: {exc.strerror or exc}."), highlight=False)
    err.print("Check that the path's folder exists and this user may write there, or give another path.",
              highlight=False, markup=False)
    sys.exit(2)

