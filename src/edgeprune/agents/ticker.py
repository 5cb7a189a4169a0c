"""Keep-alives: call something every few seconds in the background while the main thread is busy.

Why a thread: the main thread spends minutes inside torch (producing) or a benchmark (consuming) and
cannot renew a lease or a visibility timeout in between; a daemon thread can, and it dies with the
process — so a ``kill -9`` stops the renewals too, which is exactly how the others notice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console


@contextmanager
def every(interval_s: float, action: Callable[[], object], *, what: str, console: Console) -> Iterator[None]:
    """Run ``action`` every ``interval_s`` seconds while the block runs; a failed call is reported and retried."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                action()
            except Exception as exc:  # the next tick tries again; the block itself must not be interrupted
                console.print(f"[yellow]warning:[/] {what} failed: {exc}", highlight=False)

    thread = threading.Thread(target=loop, name=what, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
