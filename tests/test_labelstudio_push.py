"""Push against the real Label Studio server: tasks, pre-annotations, idempotency, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import select

from curation.catalog import LabelTask
from curation.errors import AuthError, ServiceError
from curation.labelstudio import push_frames, push_relabel, push_selection
from tests.support.labelstudio import REPO, add_predictions, make_config, make_frames, server_tasks

pytestmark = pytest.mark.labelstudio


@pytest.fixture
def client(labelstudio_server):
    with labelstudio_server.client() as client:
        yield client


def _label_tasks(catalog, project_id: int) -> dict[int, int]:
    with catalog.session() as session:
        return {t.frame_id: t.ls_task_id for t in session.scalars(select(LabelTask).where(LabelTask.ls_project_id == project_id))}


def test_push_creates_tasks_with_data_and_preannotations(catalog, labelstudio_server, client):
    frame_ids = make_frames(catalog, labelstudio_server.frames_dir("push"), 5, width=333, height=251)
    model = add_predictions(catalog, frame_ids, "det-push-v1")
    config = make_config(labelstudio_server, chunk_size=2)
    summary = push_frames(catalog, config, frame_ids, reasons={frame_ids[0]: "uncertain: battery 0.41"})
    assert (summary.imported, summary.requested, summary.model_version) == (5, 5, model)

    project = client.project(summary.project_id)
    assert project["title"] == config.project and project["model_version"] == model  # pre-labels show in the editor
    assert "battery" in project["label_config"]

    tasks = {t["data"]["frame_id"]: t for t in server_tasks(client, summary.project_id)}
    assert sorted(tasks) == sorted(frame_ids)
    assert _label_tasks(catalog, summary.project_id) == {fid: t["id"] for fid, t in tasks.items()}
    data = tasks[frame_ids[0]]["data"]
    assert data["reason"] == "uncertain: battery 0.41"
    assert (data["site"], data["camera"], data["captured_at"]) == ("west", "cam1", "2026-03-01T12:00:00")
    assert data["image"].startswith("/data/local-files/?d=labelstudio-frames/")

    # the full task: predictions in percent with per-region and image-level scores
    task = client.get_json(f"/api/tasks/{tasks[frame_ids[0]]['id']}")
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == model
    assert prediction["score"] == pytest.approx(0.5)
    first = prediction["result"][0]
    assert first["value"]["x"] == pytest.approx(100 * 20 / 333) and first["value"]["height"] == pytest.approx(100 * 80 / 251)
    assert first["value"]["rectanglelabels"] == ["cardboard"] and first["score"] == pytest.approx(0.91)

    # the image is served to the editor through the local-files storage
    response = client.request("GET", data["image"])
    assert response.headers["content-type"] == "image/jpeg" and response.content[:2] == b"\xff\xd8"


def test_repush_never_duplicates_and_adds_only_new_frames(sqlite_catalog, labelstudio_server, client):
    catalog = sqlite_catalog
    frame_ids = make_frames(catalog, labelstudio_server.frames_dir("repush"), 6)
    add_predictions(catalog, frame_ids)
    config = make_config(labelstudio_server, chunk_size=4)
    first = push_frames(catalog, config, frame_ids[:4])
    again = push_frames(catalog, config, frame_ids[:4])
    assert (again.imported, again.already_present) == (0, 4)
    more = push_frames(catalog, config, frame_ids)
    assert (more.imported, more.already_present) == (2, 4)
    counts = Counter(t["data"]["frame_id"] for t in server_tasks(client, first.project_id))
    assert counts == Counter(frame_ids)


def test_a_kill_between_import_and_commit_leaves_no_duplicate(sqlite_catalog, labelstudio_server, client, tmp_path):
    catalog = sqlite_catalog
    frame_ids = make_frames(catalog, labelstudio_server.frames_dir("crash"), 7)
    add_predictions(catalog, frame_ids)
    config = make_config(labelstudio_server, chunk_size=3)
    script = (
        "import json, os, signal, sys\n"
        "from curation.catalog import Catalog\n"
        "from curation.labelstudio import LabelStudioConfig, push_frames\n"
        "spec = json.loads(sys.argv[1])\n"
        "spec['token'] = os.environ['LS_TEST_TOKEN']\n"
        "config = LabelStudioConfig(**spec)\n"
        "kill = lambda chunk: os.kill(os.getpid(), signal.SIGKILL)  # after Label Studio imported, before our commit\n"
        "push_frames(Catalog(sys.argv[2]), config, json.loads(sys.argv[3]), on_imported=kill)\n"
    )
    spec = {k: (str(v) if k == "image_root" else v) for k, v in config.__dict__.items() if k != "token"}
    env = {**os.environ, "LS_TEST_TOKEN": labelstudio_server.token, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script, json.dumps(spec), catalog.url, json.dumps(frame_ids)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    (project,) = client.projects_titled(config.project)
    assert len(server_tasks(client, project["id"])) == 3  # the first chunk landed on the server ...
    assert _label_tasks(catalog, project["id"]) == {}  # ... but the catalog never heard of it

    summary = push_frames(catalog, config, frame_ids)
    assert (summary.recovered, summary.imported) == (3, 4)
    tasks = server_tasks(client, project["id"])
    assert Counter(t["data"]["frame_id"] for t in tasks) == Counter(frame_ids)
    assert _label_tasks(catalog, project["id"]) == {t["data"]["frame_id"]: t["id"] for t in tasks}


def test_a_task_deleted_in_label_studio_is_not_pushed_again(sqlite_catalog, labelstudio_server, client):
    catalog = sqlite_catalog
    frame_ids = make_frames(catalog, labelstudio_server.frames_dir("deleted"), 3)
    config = make_config(labelstudio_server)
    summary = push_frames(catalog, config, frame_ids)
    client.request("DELETE", f"/api/tasks/{summary.task_ids[frame_ids[0]]}")
    again = push_frames(catalog, config, frame_ids)
    assert (again.imported, again.deleted_on_server, again.already_present) == (0, 1, 2)
    assert len(server_tasks(client, summary.project_id)) == 2


def test_push_selection_carries_the_selection_reasons(sqlite_catalog, labelstudio_server, client):
    from curation.catalog import Selection, SelectionItem

    catalog = sqlite_catalog
    frame_ids = make_frames(catalog, labelstudio_server.frames_dir("selection"), 3)
    add_predictions(catalog, frame_ids, "det-sel")
    with catalog.session() as session:
        selection = Selection(name="week 12", strategy="hybrid", budget=3, seed=0, params={})
        session.add(selection)
        session.flush()
        for rank, fid in enumerate(reversed(frame_ids)):
            session.add(SelectionItem(selection_id=selection.id, frame_id=fid, rank=rank, reason=f"rank {rank}: far from labeled"))
    summary = push_selection(catalog, make_config(labelstudio_server))  # the newest selection
    assert summary.imported == 3 and summary.model_version == "det-sel"
    tasks = {t["data"]["frame_id"]: t["data"] for t in server_tasks(client, summary.project_id)}
    assert tasks[frame_ids[-1]]["reason"] == "rank 0: far from labeled"
    assert tasks[frame_ids[0]]["selection_id"] == selection.id
    with catalog.session() as session:
        assert {t.selection_id for t in session.scalars(select(LabelTask))} == {selection.id}


def test_a_new_model_version_updates_the_project(sqlite_catalog, labelstudio_server, client):
    catalog = sqlite_catalog
    frame_ids = make_frames(catalog, labelstudio_server.frames_dir("mv"), 4)
    add_predictions(catalog, frame_ids[:2], "det-a")
    config = make_config(labelstudio_server)
    first = push_frames(catalog, config, frame_ids[:2])
    add_predictions(catalog, frame_ids[2:], "det-b")
    second = push_frames(catalog, config, frame_ids[2:])
    assert first.project_id == second.project_id
    assert client.project(first.project_id)["model_version"] == "det-b"


def test_relabel_goes_to_the_relabel_project_with_the_current_labels(sqlite_catalog, labelstudio_server, client):
    from curation.catalog import Annotation

    catalog = sqlite_catalog
    frame_ids = make_frames(catalog, labelstudio_server.frames_dir("relabel"), 2)
    with catalog.session() as session:
        session.add(Annotation(frame_id=frame_ids[0], source="import:legacy", source_id="a.json#0", status="accepted",
                               is_current=True, boxes=[{"xywh_px": [10.0, 20.0, 30.0, 40.0], "label": "glass"}]))
    config = make_config(labelstudio_server)
    summary = push_relabel(catalog, config, frame_ids, reasons={frame_ids[0]: "review: false positive glass"})
    assert summary.project == config.relabel_project and summary.purpose == "relabel"
    project = client.project(summary.project_id)
    assert project["model_version"] == "current-labels"
    task = client.get_json(f"/api/tasks/{summary.task_ids[frame_ids[0]]}")
    assert task["data"]["purpose"] == "relabel" and task["data"]["reason"] == "review: false positive glass"
    assert task["predictions"][0]["result"][0]["value"]["rectanglelabels"] == ["glass"]
    assert summary.without_preannotation == 1  # the second frame had no labels yet


def test_a_wrong_token_is_an_auth_error(sqlite_catalog, labelstudio_server):
    frame_ids = make_frames(sqlite_catalog, labelstudio_server.frames_dir("auth"), 1)
    config = make_config(labelstudio_server, token="not-the-right-token")
    with pytest.raises(AuthError, match="401"):
        push_frames(sqlite_catalog, config, frame_ids)


def test_a_personal_access_token_works_against_the_server(labelstudio_server):
    from curation.labelstudio import LabelStudioClient, is_personal_access_token
    from tests.support.labelstudio import personal_access_token

    token = personal_access_token(labelstudio_server)
    assert is_personal_access_token(token)
    with LabelStudioClient(labelstudio_server.url, token) as pat_client:
        assert pat_client.whoami()["email"] == labelstudio_server.username


def test_missing_resources_are_named(labelstudio_server, client):
    with pytest.raises(ServiceError, match="project 987654 not found"):
        client.project(987654)


def test_repushing_old_frames_after_a_new_model_keeps_the_project_valid(sqlite_catalog, labelstudio_server, client):
    catalog = sqlite_catalog
    frame_ids = make_frames(catalog, labelstudio_server.frames_dir("mv-old"), 2)
    add_predictions(catalog, frame_ids, "det-old")
    config = make_config(labelstudio_server)
    first = push_frames(catalog, config, frame_ids)
    add_predictions(catalog, frame_ids, "det-new")  # nothing new to import: no det-new prediction on the server
    again = push_frames(catalog, config, frame_ids)
    assert (again.imported, again.already_present) == (0, 2)
    assert client.project(first.project_id)["model_version"] == "det-old"
