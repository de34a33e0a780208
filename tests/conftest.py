"""Shared fixtures. Services are real: PostgreSQL, Label Studio, mongod, Ray, Chromium."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_OUTPUT = REPO / "test-output"
SHARED_DATA = REPO.parent / "shared" / "data"
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def test_output() -> Path:
    TEST_OUTPUT.mkdir(exist_ok=True)
    return TEST_OUTPUT


@pytest.fixture(scope="session")
def postgres_server():
    from tests.support.postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_url(request, tmp_path) -> str:
    """A fresh, empty catalog database on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    server = request.getfixturevalue("postgres_server")
    return server.create_database(f"t{os.getpid()}_{next(_db_counter)}")


@pytest.fixture
def catalog(catalog_url):
    from curation.catalog import Catalog

    cat = Catalog(catalog_url)
    yield cat
    cat.dispose()


@pytest.fixture
def sqlite_catalog(tmp_path):
    from curation.catalog import Catalog

    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    yield cat
    cat.dispose()


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    """120 synthetic belt frames with COCO ground truth, generated once per session."""
    from curation.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth") / "frames"
    generate(out, SynthConfig(frames=120, seed=7))
    return out


@pytest.fixture
def settings_env(tmp_path, monkeypatch):
    """Settings whose state_dir is a temp folder (no beltcurate.toml, no BELTCURATE_* leaks)."""
    for key in list(os.environ):
        if key.startswith("BELTCURATE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BELTCURATE_STATE_DIR", str(tmp_path / "state"))
    from curation.settings import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def fiftyone_env() -> dict[str, str]:
    """A private mongod for FiftyOne, set in the environment before fiftyone is imported.

    Tests that use FiftyOne request this fixture and import fiftyone inside the test body: FiftyOne
    reads its database settings once, at import. mongod stops after FiftyOne's exit cleanup.
    """
    from tests.support.mongo import start_fiftyone_database

    return start_fiftyone_database()


@pytest.fixture(scope="session")
def labelstudio_server():
    """The real Label Studio server: the one `make test` launched early (reused), else our own."""
    from tests.support.labelstudio import session_server

    server = session_server()
    yield server
    server.stop()
