"""Stop signals: SIGINT, SIGTERM and SIGHUP all end a command the way Ctrl-C does.

`install()` makes SIGTERM and SIGHUP raise `Interrupted` (a KeyboardInterrupt), so the
cleanup written for Ctrl-C (save a checkpoint, stop worker pools, remove temporaries) runs
for a scheduler's kill or a closed terminal too. `deferred()` holds all three back inside a
block whose work must not be cut in half (a training step): the handler only records the
signal, and the block checks `requested` where stopping is safe.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

STOP_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; `signum` says which (exit code 128 + signum)."""

    def __init__(self, signum: int = signal.SIGINT):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)


def exit_code(e: BaseException) -> int:
    return 128 + int(getattr(e, "signum", signal.SIGINT))


def _raise(signum, _frame) -> None:
    raise Interrupted(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> None:
    """SIGTERM and SIGHUP raise Interrupted in the main thread (SIGINT already raises KeyboardInterrupt)."""
    if not _main_thread():
        return
    for s in STOP_SIGNALS:
        if s != signal.SIGINT and signal.getsignal(s) in (signal.SIG_DFL, None):
            signal.signal(s, _raise)


class _Flag:
    requested: int | None = None


@contextlib.contextmanager
def deferred() -> Iterator[_Flag]:
    """Inside the block a stop signal only sets `flag.requested` (its number); the previous
    handlers come back on exit. Outside the main thread nothing is deferred."""
    flag = _Flag()
    if not _main_thread():
        yield flag
        return

    def note(signum, _frame):
        flag.requested = signum

    # a signal the process ignores (SIGHUP under nohup, SIGINT in a background job) stays ignored
    previous = {s: signal.signal(s, note) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
