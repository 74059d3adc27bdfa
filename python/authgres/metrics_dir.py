"""The folder where worker processes keep their metrics (prometheus-client's multiprocess mode).

`authgres serve --workers N` calls prepare() in the supervising process before it starts the workers,
and worker_ended() for each worker that exits. This module imports nothing of prometheus-client at
load: the library reads PROMETHEUS_MULTIPROC_DIR once, when it is first imported, so the variable
must be set before any process that will serve metrics imports it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def prepare() -> Callable[[], None]:
    """Sets PROMETHEUS_MULTIPROC_DIR for the workers to come: the folder the environment names, emptied
    of an earlier run's files, or else a new temporary folder. Returns what removes what it made."""
    named = os.environ.get(VARIABLE)
    if named:
        folder = Path(named)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
        return lambda: None
    made = tempfile.mkdtemp(prefix="authgres-metrics-")
    os.environ[VARIABLE] = made
    return lambda: shutil.rmtree(made, ignore_errors=True)


def worker_ended(pid: int) -> None:
    """Takes an ended worker's levels (connections in use, calls waiting) out of the sums; its counts stay."""
    if os.environ.get(VARIABLE):
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid)  # type: ignore[no-untyped-call]
