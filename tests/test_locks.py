"""Run locks: a second holder is refused with the owner's facts; stale locks are taken over."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import select

from curation.catalog import Lock
from curation.errors import LockError
from curation.locks import acquire, force_release, held, release


def test_second_acquire_is_refused_while_holder_lives(catalog, catalog_url):
    acquire(catalog, "refresh")
    code = (
        "import sys; from curation.catalog import Catalog; from curation.locks import acquire\n"
        f"acquire(Catalog({catalog_url!r}), 'refresh')"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert other.returncode != 0
    assert "refresh already running (pid" in other.stderr
    release(catalog, "refresh")
    with catalog.session() as session:
        assert session.scalars(select(Lock)).all() == []


def test_stale_lock_of_dead_process_is_taken_over(catalog, catalog_url, caplog):
    dead = subprocess.run(
        [sys.executable, "-c",
         f"from curation.catalog import Catalog; from curation.locks import acquire; acquire(Catalog({catalog_url!r}), 'refresh')"],
        check=True,
    )
    assert dead.returncode == 0  # exited while holding the lock
    with caplog.at_level("WARNING"):
        lock = acquire(catalog, "refresh")
    assert "stale refresh lock" in caplog.text
    with catalog.session() as session:
        assert session.get(Lock, "refresh").owner_pid == lock.owner_pid


def test_context_manager_releases_on_error(catalog):
    with pytest.raises(RuntimeError):
        with held(catalog, "refresh"):
            raise RuntimeError("stage failed")
    acquire(catalog, "refresh")  # free again
    assert force_release(catalog, "refresh")


def test_lock_error_exit_code():
    assert LockError("x").exit_code == 3
