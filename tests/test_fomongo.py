"""The mongod beltcurate manages for FiftyOne: start, reuse, stop, clear errors (real mongod)."""

from __future__ import annotations

import os

import pytest

from curation.errors import ServiceError
from curation.fomongo import Mongod, configure_fiftyone_env, ping

pytestmark = pytest.mark.fiftyone


def test_start_attach_stop(tmp_path):
    mongod = Mongod(tmp_path / "db").start()
    try:
        assert mongod.owned and ping(mongod.uri)
        other = Mongod(tmp_path / "db")
        assert other.attach() and other.port == mongod.port and not other.owned  # reused, not restarted
    finally:
        mongod.stop()
    assert not ping(mongod.uri, timeout_s=0.5)
    assert not (tmp_path / "db" / "mongod.json").exists()
    assert not Mongod(tmp_path / "db").attach()


def test_stale_state_file_is_not_attached(tmp_path):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "mongod.json").write_text('{"pid": 999999, "port": 1}')
    assert not Mongod(tmp_path / "db").attach()
    assert not (tmp_path / "db" / "mongod.json").exists()  # cleaned up


def test_second_mongod_on_the_same_folder_fails_with_a_clear_error(tmp_path):
    first = Mongod(tmp_path / "db").start()
    try:
        with pytest.raises(ServiceError, match="mongod exited with code .*another mongod using this data folder"):
            Mongod(tmp_path / "db").start()
        assert ping(first.uri)  # the running one is untouched
    finally:
        first.stop()


def test_configure_env_sets_database_before_import():
    env = configure_fiftyone_env("mongodb://127.0.0.1:1/", "beltcurate_x", {})
    assert env["FIFTYONE_DATABASE_URI"] == "mongodb://127.0.0.1:1/"
    assert env["FIFTYONE_DATABASE_NAME"] == "beltcurate_x"
    assert env["FIFTYONE_DO_NOT_TRACK"] == "true"
    assert "FIFTYONE_DATABASE_URI" not in os.environ or os.environ["FIFTYONE_DATABASE_URI"] != "mongodb://127.0.0.1:1/"


def test_unreachable_mongo_uri_names_the_setting(settings_env, monkeypatch):
    import curation.fomongo as fomongo
    from curation.settings import load_settings

    monkeypatch.setattr(fomongo, "_ACTIVE", None)
    monkeypatch.setenv("BELTCURATE_REVIEW_MONGO_URI", "mongodb://127.0.0.1:9/")
    with pytest.raises(ServiceError, match="no MongoDB answers at review.mongo_uri"):
        fomongo.ensure_fiftyone_database(load_settings())
