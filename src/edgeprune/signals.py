"""SIGTERM as Ctrl-C, and whether either arrived: how the long-running commands stop cleanly.

Agents and sweeps are stopped with SIGTERM (by ``edgeprune sweep``, a supervisor, ``kill``) as often as with
Ctrl-C; both should unwind the same way, handing running work back. Torch-free on purpose: the consumer
agent imports it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

_INTERRUPTED = threading.Event()
_PENDING = threading.Event()  # arrived while deferred; raised when the deferred block ends
_deferring = [0]


def _handler(signum: int, frame: Any) -> None:
    _INTERRUPTED.set()
    if _deferring[0]:
        _PENDING.set()
        return
    raise KeyboardInterrupt


def interrupt_requested() -> bool:
    """Whether SIGTERM or Ctrl-C arrived inside :func:`sigterm_as_interrupt`. Why ask: the KeyboardInterrupt a
    signal raises can surface as another error — an extension module whose import it cuts short raises
    ImportError ("initialization failed") — and a worker must not take that for a failed trial and go on."""
    return _INTERRUPTED.is_set()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so running trials are stopped and queued again; both are remembered
    (:func:`interrupt_requested`) until the block ends. SIGINT stays ignored where it was (a shell's background
    job). Why forget at the end: a process that goes on (a library caller, a test run) would otherwise take every
    later failure of a consumer or producer for an interrupt and hand its job back instead of retrying it."""
    _INTERRUPTED.clear()
    _PENDING.clear()
    signals = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is signal.default_int_handler
                                  else [])
    previous = {s: signal.signal(s, _handler) for s in signals}
    try:
        yield
    finally:
        for s, before in previous.items():
            signal.signal(s, before)
        _INTERRUPTED.clear()
        _PENDING.clear()


def raise_if_interrupted() -> None:
    """Raise the interrupt again if one arrived: for long loops (benchmark iterations, training steps, serving).

    Why: the KeyboardInterrupt a signal handler raises is lost when it lands in a weak-reference callback or a
    ``__del__`` that the garbage collector happens to run at that moment — Python prints "Exception ignored"
    and carries on, and an interrupted consumer would measure a million iterations more. A loop that asks here
    stops anyway. Inside :func:`interrupts_deferred` it waits for the block's end, like the signal itself."""
    if _INTERRUPTED.is_set() and not _deferring[0] and signal.getsignal(signal.SIGTERM) is _handler:
        raise KeyboardInterrupt


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold an interrupt back until the block ends, then raise it. For short steps that create what only the
    caller can hand back — a trial asked (created, then leased), a job claimed — so the interrupt reaches the
    caller with the thing in hand instead of leaving it half made for a janitor to find a minute later."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1
    if not _deferring[0] and _PENDING.is_set():
        _PENDING.clear()
        raise KeyboardInterrupt


def exit_now(code: int) -> NoReturn:
    """Leave at once, once the interrupted work is handed back: flush the output and skip the interpreter's
    teardown. Why: with torch, ONNX Runtime and Optuna loaded, that teardown garbage-collects for seconds —
    per process, on a busy machine — and Ctrl-C should give the prompt back in a few. Nothing is lost: the
    trials and jobs handed back are committed to the study and the queue before this is called."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
