"""The refresh without Label Studio: stages, run records, report, lock, quarantine, failed export."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from curation.catalog import Catalog, DatasetVersion, Frame, Prediction, Quarantine, Run, Selection
from curation.errors import LockError

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO / "models" / "demo_fcos_mnv3s.pt"
BELTCURATE = str(Path(sys.executable).parent / "beltcurate")


@pytest.fixture
def refresh_env(tmp_path, synth_small, monkeypatch):
    for key in list(os.environ):
        if key.startswith("BELTCURATE_"):
            monkeypatch.delenv(key)
    inbox = tmp_path / "inbox"
    shutil.copytree(synth_small / "images", inbox)
    env = {
        "BELTCURATE_STATE_DIR": str(tmp_path / "state"),
        "BELTCURATE_REFRESH_INPUTS": str(inbox),
        "BELTCURATE_MODEL_CHECKPOINT": str(CHECKPOINT),
        "BELTCURATE_SELECT_BUDGET": "10",
        "BELTCURATE_LABELSTUDIO_URL": "http://127.0.0.1:9",  # no local server token: push/pull skip
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return tmp_path, inbox, env


def _settings():
    from curation.settings import load_settings

    return load_settings()


def test_refresh_runs_every_stage_and_records_it(refresh_env, catalog_url, monkeypatch):
    """On SQLite and on a real PostgreSQL server (catalog_url is parametrized over both)."""
    from curation.refresh import refresh

    tmp_path, inbox, _ = refresh_env
    monkeypatch.setenv("BELTCURATE_CATALOG_URL", catalog_url)
    settings = _settings()
    assert settings.catalog_url == catalog_url
    catalog = Catalog(settings.catalog_url)
    summary = refresh(catalog, settings)
    assert summary.status == "success"
    assert list(summary.stages) == ["ingest", "score", "pull", "select", "push", "export", "report"]
    assert summary.stages["ingest"]["counts"]["new"] == 120
    assert summary.stages["score"]["counts"]["scored"] == 120
    assert summary.stages["select"]["counts"]["selected"] == 10
    assert summary.stages["push"]["status"] == "skipped" and "token" in summary.stages["push"]["counts"]["skipped_because"]
    report = Path(summary.report)
    assert report.is_file() and "<img" in report.read_text()
    assert {p.name for p in report.parent.glob("*.png")} >= {"uncertainty.png", "class_mix.png", "site_drift.png"}
    with catalog.session() as session:
        run = session.get(Run, summary.run_id)
        assert run.status == "success" and run.stages["score"]["status"] == "done"
    # second run: nothing new; a finished run's unpushed selection is not pinned, a new one is made
    again = refresh(catalog, settings)
    assert again.status == "nothing_to_do"
    assert again.stages["ingest"]["counts"]["new"] == 0 and again.stages["score"]["counts"]["scored"] == 0
    with catalog.session() as session:
        assert len(session.scalars(select(Prediction)).all()) == 120
        assert len(session.scalars(select(Selection)).all()) == 2


def test_corrupt_images_arriving_are_quarantined_and_run_completes(refresh_env):
    from curation.refresh import refresh

    tmp_path, inbox, _ = refresh_env
    settings = _settings()
    catalog = Catalog(settings.catalog_url)
    refresh(catalog, settings)
    drop = inbox / "west" / "cam1" / "late"
    drop.mkdir(parents=True)
    good = next((inbox / "west").rglob("*.jpg")).read_bytes()
    (drop / "half.jpg").write_bytes(good[: len(good) // 3])
    (drop / "empty.jpg").write_bytes(b"")
    summary = refresh(catalog, settings)
    assert summary.status in ("success", "nothing_to_do")
    assert summary.stages["ingest"]["counts"]["quarantined"] == 2
    with catalog.session() as session:
        assert {q.reason for q in session.scalars(select(Quarantine))} == {"truncated", "zero_byte"}


def test_second_refresh_refuses_while_one_runs(refresh_env):
    from curation.locks import acquire, release

    tmp_path, inbox, env = refresh_env
    settings = _settings()
    catalog = Catalog(settings.catalog_url)
    acquire(catalog, "refresh")  # this test process is alive: the lock is not stale
    try:
        done = subprocess.run([BELTCURATE, "refresh"], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    finally:
        release(catalog, "refresh")
    assert done.returncode == 3, done.stderr
    assert "refresh already running (pid %d" % os.getpid() in done.stderr
    with catalog.session() as session:
        refused = session.scalars(select(Run).where(Run.command == "refresh")).one()
        assert refused.status == "failed" and "already running" in refused.error


def test_failed_export_leaves_no_partial_version_and_rerun_completes(refresh_env, monkeypatch):
    from curation.catalog import Annotation
    from curation.refresh import StageError, refresh

    tmp_path, inbox, _ = refresh_env
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the export folder should be")
    monkeypatch.setenv("BELTCURATE_EXPORT_DIR", str(blocker / "datasets"))
    settings = _settings()
    catalog = Catalog(settings.catalog_url)
    refresh(catalog, settings)
    with catalog.session() as session:  # labels arrive (as a pull would store them)
        for frame in session.scalars(select(Frame).limit(5)):
            session.add(Annotation(frame_id=frame.id, source="labelstudio", source_id=f"a{frame.id}",
                                   boxes=[{"xywh_px": [1, 2, 30, 40], "label": "battery"}]))
    with pytest.raises(StageError, match="stage 'export'"):
        refresh(catalog, settings)
    with catalog.session() as session:
        assert session.scalars(select(DatasetVersion)).all() == []
        failed = session.scalars(select(Run).order_by(Run.id.desc())).first()
        assert failed.status == "failed" and failed.stages["export"]["status"] == "failed"
    monkeypatch.setenv("BELTCURATE_EXPORT_DIR", str(tmp_path / "datasets"))
    summary = refresh(catalog, _settings())
    assert summary.stages["export"]["counts"]["name"] == "v0001"
    assert summary.stages["export"]["counts"]["n_frames"] == 5
    assert not list((tmp_path / "datasets").glob(".*tmp*"))


def test_status_json_and_exit_codes(refresh_env):
    tmp_path, inbox, env = refresh_env
    full_env = {**os.environ, **env}
    first = subprocess.run([BELTCURATE, "refresh", "--json"], env=full_env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "success"
    second = subprocess.run([BELTCURATE, "refresh", "--strict-exit", "--json"], env=full_env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 4, second.stderr
    status = json.loads(subprocess.run([BELTCURATE, "status", "--json"], env=full_env, capture_output=True, text=True, check=True).stdout)
    assert status["lock"] is None
    assert [r["status"] for r in status["runs"][:2]] == ["nothing_to_do", "success"]
