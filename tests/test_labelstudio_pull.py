"""Pull against the real Label Studio server: annotate through the API as an annotator would,
pull, and check the catalog against what was drawn."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from curation.catalog import Annotation, LabelTask
from curation.labelstudio import WATERMARK_OVERLAP_S, pull_annotations, push_frames, push_relabel
from tests.support.labelstudio import add_predictions, annotate, make_config, make_frames, region

pytestmark = pytest.mark.labelstudio

W, H = 333, 251  # odd sizes: percent <-> pixel rounding shows


@pytest.fixture
def client(labelstudio_server):
    with labelstudio_server.client() as client:
        yield client


def _pushed(catalog, server, n, **config_kwargs):
    frame_ids = make_frames(catalog, server.frames_dir("pull"), n, width=W, height=H)
    add_predictions(catalog, frame_ids)
    config = make_config(server, **config_kwargs)
    summary = push_frames(catalog, config, frame_ids)
    return config, frame_ids, summary.task_ids


def _rows(catalog, frame_id=None) -> list[Annotation]:
    with catalog.session() as session:
        query = select(Annotation).order_by(Annotation.id)
        if frame_id is not None:
            query = query.where(Annotation.frame_id == frame_id)
        return list(session.scalars(query))


def _current(catalog, frame_id) -> Annotation | None:
    current = [row for row in _rows(catalog, frame_id) if row.is_current]
    assert len(current) <= 1
    return current[0] if current else None


def _assert_boxes(stored, drawn):
    assert [b["label"] for b in stored] == [label for _, label in drawn]
    for box, (xywh, _) in zip(stored, drawn):
        assert box["xywh_px"] == pytest.approx(xywh, abs=0.5)


def test_round_trip_edit_and_delete(catalog, labelstudio_server, client):
    """push -> annotate -> pull equals what was drawn -> edit -> incremental pull -> delete -> reconcile."""
    config, frame_ids, task_ids = _pushed(catalog, labelstudio_server, 4)
    drawn = [([12.3, 40.7, 101.1, 66.6], "battery"), ([200.0, 150.5, 80.25, 99.9], "glass"), ([0.0, 0.0, W, H], "film")]
    first = annotate(client, task_ids[frame_ids[0]], [region(b, label, W, H, f"r{i}") for i, (b, label) in enumerate(drawn)],
                     lead_time=31.5)
    annotate(client, task_ids[frame_ids[1]], [region([5, 5, 20, 20], "paper", W, H)])

    summary = pull_annotations(catalog, config)
    assert summary.mode == "full"  # the first pull reconciles
    assert (summary.annotations_new, summary.labeled, summary.rejected_regions) == (2, 2, 0)
    row = _current(catalog, frame_ids[0])
    _assert_boxes(row.boxes, drawn)
    assert (row.source, row.status, row.annotator, row.lead_time_s) == ("labelstudio", "accepted", labelstudio_server.username, 31.5)
    with catalog.session() as session:
        statuses = {t.frame_id: t.status for t in session.scalars(select(LabelTask))}
    assert [statuses[f] for f in frame_ids] == ["labeled", "labeled", "pushed", "pushed"]

    time.sleep(WATERMARK_OVERLAP_S + 1)  # so the next incremental window starts after the annotations
    again = pull_annotations(catalog, config)  # nothing changed
    assert again.mode == "incremental"
    assert (again.annotations_new, again.annotations_updated, again.annotations_deleted) == (0, 0, 0)

    edited = [([50.0, 60.0, 70.0, 80.0], "aluminum_can")]
    client.request("PATCH", f"/api/annotations/{first['id']}", json={"result": [region(edited[0][0], "aluminum_can", W, H)]})
    incremental = pull_annotations(catalog, config)
    assert incremental.mode == "incremental" and incremental.annotations_updated == 1
    assert incremental.tasks_seen < len(frame_ids)  # only what changed since the last pull
    _assert_boxes(_current(catalog, frame_ids[0]).boxes, edited)

    client.request("DELETE", f"/api/annotations/{first['id']}")
    client.request("DELETE", f"/api/tasks/{task_ids[frame_ids[1]]}")
    reconcile = pull_annotations(catalog, config, full=True)
    assert reconcile.mode == "full"
    assert (reconcile.annotations_deleted, reconcile.tasks_deleted) == (2, 1)
    assert _current(catalog, frame_ids[0]) is None and _current(catalog, frame_ids[1]) is None
    assert {row.status for row in _rows(catalog)} == {"deleted"}
    with catalog.session() as session:
        statuses = {t.frame_id: t.status for t in session.scalars(select(LabelTask))}
    assert (statuses[frame_ids[0]], statuses[frame_ids[1]]) == ("pushed", "deleted")


def test_an_incremental_pull_sees_a_deleted_annotation(sqlite_catalog, labelstudio_server, client):
    config, frame_ids, task_ids = _pushed(sqlite_catalog, labelstudio_server, 2)
    made = annotate(client, task_ids[frame_ids[0]], [region([5, 5, 20, 20], "paper", W, H)])
    pull_annotations(sqlite_catalog, config)
    client.request("DELETE", f"/api/annotations/{made['id']}")
    summary = pull_annotations(sqlite_catalog, config)
    assert summary.mode == "incremental" and summary.annotations_deleted == 1
    assert _current(sqlite_catalog, frame_ids[0]) is None


def test_every_nth_pull_is_a_full_reconcile(sqlite_catalog, labelstudio_server):
    config, _, _ = _pushed(sqlite_catalog, labelstudio_server, 1, reconcile_every=3)
    modes = [pull_annotations(sqlite_catalog, config).mode for _ in range(5)]
    assert modes == ["full", "incremental", "incremental", "full", "incremental"]


def test_skipped_tasks_and_invalid_regions(sqlite_catalog, labelstudio_server, client):
    config, frame_ids, task_ids = _pushed(sqlite_catalog, labelstudio_server, 2)
    annotate(client, task_ids[frame_ids[0]], [], was_cancelled=True)
    annotate(client, task_ids[frame_ids[1]], [
        region([10, 10, 50, 50], "cardboard", W, H, "ok"),
        region([W - 5, 10, 60, 40], "paper", W, H, "outside"),  # 55 px past the right edge
        region([30, 30, 0, 40], "paper", W, H, "flat"),  # zero area
        region([40, 40, 20, 20], "unicorn", W, H, "unknown"),  # not in the class map
    ])
    summary = pull_annotations(sqlite_catalog, config)
    assert (summary.skipped, summary.labeled, summary.rejected_regions) == (1, 1, 3)
    skipped = _rows(sqlite_catalog, frame_ids[0])[0]
    assert (skipped.status, skipped.is_current) == ("skipped", False)
    row = _current(sqlite_catalog, frame_ids[1])
    _assert_boxes(row.boxes, [([10, 10, 50, 50], "cardboard")])
    kinds = {p["where"].rsplit(" ", 1)[-1]: p["kind"] for p in row.problems}
    assert kinds == {"outside": "box_outside", "flat": "degenerate_box", "unknown": "unknown_class"}
    with sqlite_catalog.session() as session:
        assert session.scalar(select(LabelTask.status).where(LabelTask.frame_id == frame_ids[0])) == "skipped"


def test_several_annotations_on_one_task(sqlite_catalog, labelstudio_server, client):
    config, frame_ids, task_ids = _pushed(sqlite_catalog, labelstudio_server, 2)
    task = task_ids[frame_ids[0]]
    truth = annotate(client, task, [region([10, 10, 50, 50], "battery", W, H)], ground_truth=True)
    annotate(client, task, [region([200, 100, 50, 50], "battery", W, H)])  # later, but not ground truth
    later_task = task_ids[frame_ids[1]]
    annotate(client, later_task, [region([10, 10, 50, 50], "glass", W, H)])
    latest = annotate(client, later_task, [region([12, 11, 50, 50], "glass", W, H)])  # agrees
    summary = pull_annotations(sqlite_catalog, config)
    assert summary.disagreements == 1
    current = _current(sqlite_catalog, frame_ids[0])
    assert current.source_id.endswith(f":{truth['id']}")
    assert [p["kind"] for p in current.problems] == ["disagreement"]
    assert _current(sqlite_catalog, frame_ids[1]).source_id.endswith(f":{latest['id']}")
    assert len(_rows(sqlite_catalog, frame_ids[0])) == 2  # both kept, one current


def test_a_relabel_correction_becomes_the_current_annotation(sqlite_catalog, labelstudio_server, client):
    config, frame_ids, task_ids = _pushed(sqlite_catalog, labelstudio_server, 1)
    annotate(client, task_ids[frame_ids[0]], [region([10, 10, 50, 50], "glass", W, H)])
    pull_annotations(sqlite_catalog, config)
    relabel = push_relabel(sqlite_catalog, config, frame_ids, reasons={frame_ids[0]: "review: confusion glass/pet_bottle"})
    fixed = annotate(client, relabel.task_ids[frame_ids[0]], [region([10, 10, 50, 50], "pet_bottle", W, H)])
    summary = pull_annotations(sqlite_catalog, config)
    assert config.relabel_project in summary.projects
    current = _current(sqlite_catalog, frame_ids[0])
    assert current.source_id.endswith(f":{fixed['id']}") and current.boxes[0]["label"] == "pet_bottle"

    client.request("DELETE", f"/api/annotations/{fixed['id']}")  # the correction is withdrawn
    pull_annotations(sqlite_catalog, config)
    assert _current(sqlite_catalog, frame_ids[0]).boxes[0]["label"] == "glass"


def test_pull_takes_over_an_imported_label_and_gives_it_back(sqlite_catalog, labelstudio_server, client):
    config, frame_ids, task_ids = _pushed(sqlite_catalog, labelstudio_server, 1)
    with sqlite_catalog.session() as session:
        session.add(Annotation(frame_id=frame_ids[0], source="import:legacy", source_id="x#0", status="accepted",
                               is_current=True, boxes=[{"xywh_px": [1.0, 1.0, 5.0, 5.0], "label": "paper"}]))
    made = annotate(client, task_ids[frame_ids[0]], [region([10, 10, 50, 50], "glass", W, H)])
    pull_annotations(sqlite_catalog, config)
    assert _current(sqlite_catalog, frame_ids[0]).source == "labelstudio"
    client.request("DELETE", f"/api/annotations/{made['id']}")
    pull_annotations(sqlite_catalog, config)
    assert _current(sqlite_catalog, frame_ids[0]).source == "import:legacy"


def test_a_pull_larger_than_one_export_chunk(sqlite_catalog, labelstudio_server, client):
    """More tasks than one export request carries (ids travel as query fields; Django caps them)."""
    from curation.labelstudio import EXPORT_CHUNK, ensure_project
    from curation.synth import CLASSES

    n = EXPORT_CHUNK + 150
    frame_ids = make_frames(sqlite_catalog, labelstudio_server.frames_dir("big"), 1, width=W, height=H)
    with sqlite_catalog.session() as session:  # more frames sharing the one image file
        from curation.catalog import Frame

        first = session.get(Frame, frame_ids[0])
        for i in range(n - 1):
            extra = Frame(content_hash=f"big-{i}-{first.content_hash[:20]}", path=first.path, width=W, height=H,
                          format="JPEG", size_bytes=1, site="west", line="L1", camera="cam1")
            session.add(extra)
            session.flush()
            frame_ids.append(extra.id)
    config = make_config(labelstudio_server)
    project = ensure_project(client, config.project, CLASSES, None)
    drawn = region([10, 20, 30, 40], "paper", W, H)
    tasks = [{"data": {"image": "/x.jpg", "frame_id": fid, "reason": ""}, "annotations": [{"result": [drawn]}]}
             for fid in frame_ids]
    client.import_tasks(project["id"], tasks)
    summary = pull_annotations(sqlite_catalog, config)
    assert (summary.tasks_seen, summary.annotations_new, summary.tasks_adopted) == (n, n, n)
    assert _current(sqlite_catalog, frame_ids[-1]).boxes[0]["xywh_px"] == pytest.approx([10, 20, 30, 40], abs=0.5)
