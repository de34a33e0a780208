"""Named run locks in the catalog: one refresh at a time, across processes and hosts.

A lock row names its owner (pid, host, start time). A second process gets ``LockError`` with
those facts; a lock whose owner process is dead (same host, pid gone) is stale and is taken over
with a warning, atomically (compare-and-swap on the old owner), so two takers cannot both win.
"""

from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from curation.catalog import Catalog, Lock, utcnow
from curation.errors import LockError
from curation.processes import pid_alive as _pid_alive

log = logging.getLogger(__name__)


def acquire(catalog: Catalog, name: str, *, run_id: int | None = None) -> Lock:
    """Take lock ``name`` for this process or raise ``LockError`` naming the holder."""
    me, host = os.getpid(), socket.gethostname()
    try:
        with catalog.session() as session:
            lock = Lock(name=name, owner_pid=me, host=host, run_id=run_id, acquired_at=utcnow())
            session.add(lock)
        return lock
    except IntegrityError:
        pass
    with catalog.session() as session:
        held = session.get(Lock, name)
        if held is None:  # released between our insert and read: try once more
            return acquire(catalog, name, run_id=run_id)
        holder = (held.owner_pid, held.host, held.acquired_at)
    pid, holder_host, since = holder
    if holder_host == host and not _pid_alive(pid):
        with catalog.session() as session:
            taken = session.execute(
                update(Lock)
                .where(Lock.name == name, Lock.owner_pid == pid, Lock.host == holder_host)
                .values(owner_pid=me, host=host, run_id=run_id, acquired_at=utcnow())
            ).rowcount
        if taken == 1:
            log.warning("took over stale %s lock of dead process %s (since %s)", name, pid, since)
            return Lock(name=name, owner_pid=me, host=host, run_id=run_id)
    raise LockError(f"{name} already running (pid {pid} on {holder_host}, since {since:%Y-%m-%d %H:%M:%S} UTC); "
                    f"wait for it, or if that process is gone from another host, run 'beltcurate unlock {name}'")


def release(catalog: Catalog, name: str) -> None:
    with catalog.session() as session:
        session.execute(delete(Lock).where(Lock.name == name, Lock.owner_pid == os.getpid()))


def force_release(catalog: Catalog, name: str) -> bool:
    """Remove a lock whatever its owner (for an operator, when the holder's host is gone)."""
    with catalog.session() as session:
        return session.execute(delete(Lock).where(Lock.name == name)).rowcount == 1


@contextmanager
def held(catalog: Catalog, name: str, *, run_id: int | None = None) -> Iterator[None]:
    acquire(catalog, name, run_id=run_id)
    try:
        yield
    finally:
        release(catalog, name)
