"""Run records: every CLI command that changes state leaves one row in ``runs``."""

from __future__ import annotations

import os
import socket
import traceback
from contextlib import contextmanager
from typing import Any, Iterator

from curation.catalog import Catalog, Run, utcnow


@contextmanager
def recorded_run(catalog: Catalog, command: str, args: dict[str, Any]) -> Iterator[Run]:
    """Create a ``runs`` row, yield it (set ``run.counts``/``run.status``), close it on exit."""
    safe_args = {k: (str(v) if not isinstance(v, (int, float, bool, type(None), list)) else v) for k, v in args.items()}
    with catalog.session() as session:
        run = Run(command=command, args=safe_args, pid=os.getpid(), host=socket.gethostname(), counts={}, stages={})
        session.add(run)
    try:
        yield run
    except BaseException as exc:
        with catalog.session() as session:
            row = session.get(Run, run.id)
            row.status = "failed"
            row.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:4000]
            row.finished_at = utcnow()
            row.counts = run.counts
            row.stages = run.stages
        raise
    with catalog.session() as session:
        row = session.get(Run, run.id)
        row.status = run.status if run.status != "running" else "success"
        row.finished_at = utcnow()
        row.counts = run.counts
        row.stages = run.stages
