"""A saved error view goes back to labeling: its frames become relabel tasks on the real Label Studio server."""

from __future__ import annotations

import pytest

from tests.support.review_case import EXPECTED_VIEWS, build_case, review_settings  # noqa: F401

pytestmark = [pytest.mark.fiftyone, pytest.mark.labelstudio]


def test_send_false_positives_view_to_labelstudio(sqlite_catalog, review_settings, labelstudio_server):
    from curation.review import build_review_dataset, send_view_to_labelstudio
    from tests.support.labelstudio import make_config, server_tasks

    # Frames live below the server's document root (local-files serving).
    case = build_case(sqlite_catalog, labelstudio_server.frames_dir("review"))
    build_review_dataset(sqlite_catalog, review_settings, embeddings=case.embeddings)
    config = make_config(labelstudio_server)

    sent = send_view_to_labelstudio(sqlite_catalog, review_settings, "false-positives", labelstudio_config=config)
    assert sent["frames"] == len(EXPECTED_VIEWS["false-positives"])
    assert sent["push"]["project"] == config.relabel_project and sent["push"]["imported"] == 1

    with labelstudio_server.client() as client:
        tasks = server_tasks(client, sent["push"]["project_id"])
    assert [task["data"]["frame_id"] for task in tasks] == [case.frame_ids["fp"]]
    assert tasks[0]["data"]["purpose"] == "relabel"
    assert "false-positives" in tasks[0]["data"]["reason"]

    again = send_view_to_labelstudio(sqlite_catalog, review_settings, "false-positives", labelstudio_config=config)
    assert again["push"]["imported"] == 0 and again["push"]["already_present"] == 1  # idempotent
