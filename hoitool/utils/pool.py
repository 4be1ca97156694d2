"""Run independent tasks inline or in worker processes, handing each result to the caller as it lands.

    run_tasks(tasks, fn, workers=2, initializer=init, initargs=(...,), on_done=save)

With one worker (or one task) everything runs in this process (after `initializer`, unless
`inline_init=False`). Workers are spawned (never forked: rendering and torch threads do not
survive a fork) and ignore Ctrl-C; on any error or interrupt in the main process the pool is
stopped at once, so finished results (already handed to `on_done`) are all that remains.
"""

from __future__ import annotations

import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any, Callable, Iterable


def _worker_init(initializer: Callable | None, initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's business
    if initializer is not None:
        initializer(*initargs)


def run_tasks(tasks: Iterable[Any], fn: Callable[[Any], Any], workers: int, on_done: Callable[[Any], None],
              initializer: Callable | None = None, initargs: tuple = (), inline_init: bool = True) -> None:
    tasks = list(tasks)
    if workers <= 1 or len(tasks) <= 1:
        if initializer is not None and inline_init:
            initializer(*initargs)
        for t in tasks:
            on_done(fn(t))
        return
    ex = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=get_context("spawn"),
                             initializer=_worker_init, initargs=(initializer, initargs))
    try:
        futures = [ex.submit(fn, t) for t in tasks]
        for f in as_completed(futures):
            on_done(f.result())
    except BaseException:
        procs = list(getattr(ex, "_processes", {}).values())
        ex.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.terminate()
        raise
    ex.shutdown()
