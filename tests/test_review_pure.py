"""The parts of review that need no database: near-duplicate groups, fingerprints, scope, URLs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings as hsettings, strategies as st

from curation.review import FrameRecord, collect_records, near_duplicate_groups, view_urls
from tests.support.review_case import CASE, IN_DATASET, SELECTION, build_case


def _brute_force_groups(vectors: np.ndarray, threshold: float) -> list[set[int]]:
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    close = (unit @ unit.T) > 1.0 - threshold
    seen, groups = set(), []
    for start in range(len(vectors)):
        if start in seen:
            continue
        group, frontier = {start}, [start]
        while frontier:
            row = frontier.pop()
            for other in np.nonzero(close[row])[0].tolist():
                if other not in group:
                    group.add(other)
                    frontier.append(other)
        seen |= group
        groups.append(group)
    return groups


@hsettings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(2, 6), st.floats(0.001, 0.5), st.integers(0, 2**31 - 1), st.integers(1, 7))
def test_near_duplicate_groups_equal_brute_force_components(n_rows, dim, threshold, seed, block_rows):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(max(1, n_rows // 3), dim))
    vectors = base[rng.integers(0, len(base), n_rows)] + rng.normal(scale=0.05, size=(n_rows, dim))
    labels = near_duplicate_groups(vectors, threshold, block_rows=block_rows)
    got = {}
    for row, label in enumerate(labels.tolist()):
        got.setdefault(label, set()).add(row)
    assert sorted(map(sorted, got.values())) == sorted(map(sorted, _brute_force_groups(vectors, threshold)))
    for label, members in got.items():
        assert label == min(members)  # the label is the group's first row


def test_near_duplicate_groups_of_distinct_vectors_are_singletons():
    assert near_duplicate_groups(np.eye(5), 0.05).tolist() == [0, 1, 2, 3, 4]
    assert near_duplicate_groups(np.zeros((0, 3)), 0.05).tolist() == []


def test_fingerprint_changes_with_content_only():
    record = FrameRecord(frame_id=1, filepath="/a.jpg", width=10, height=10, site="s", line="l", camera="c",
                         sequence=None, captured_at=None, gt_boxes=[{"xywh_px": [1, 1, 2, 2], "label": "paper"}])
    same = FrameRecord(**{**record.__dict__})
    assert record.fingerprint() == same.fingerprint()
    same.gt_boxes = [{"xywh_px": [1, 1, 2, 3], "label": "paper"}]
    assert record.fingerprint() != same.fingerprint()
    same.gt_boxes = record.gt_boxes
    same.selection_reason = "why"
    assert record.fingerprint() != same.fingerprint()


def test_collect_records_scope_and_fields(catalog, tmp_path):
    """On SQLite and on a real PostgreSQL server."""
    case = build_case(catalog, tmp_path / "img")
    scope, records = collect_records(catalog, max_unlabeled=10)
    by_name = {case.name_of(record.frame_id): record for record in records}
    assert sorted(by_name) == sorted(IN_DATASET)
    assert scope.model_version == "m1" and scope.selection == "sel-new"
    for name, record in by_name.items():
        gt, pred, uncertainty, site, camera = CASE[name]
        assert record.gt_boxes == gt and record.pred_boxes == pred
        assert record.uncertainty == uncertainty and (record.site, record.camera) == (site, camera)
    assert [case.name_of(r.frame_id) for r in sorted(records, key=lambda r: r.selection_rank if r.selection_rank is not None else 99)][:2] == SELECTION
    assert by_name["u_mid"].selection_reason == "uncertainty rank 0"


def test_collect_records_caps_unlabeled_by_uncertainty(sqlite_catalog, tmp_path):
    case = build_case(sqlite_catalog, tmp_path / "img")
    _, records = collect_records(sqlite_catalog, max_unlabeled=1)
    unlabeled = {case.name_of(r.frame_id) for r in records if not r.labeled}
    # The most uncertain unlabeled frame, plus the selected ones (always in).
    assert unlabeled == {"u_high", *SELECTION}


def test_collect_records_unknown_model_names_the_known_ones(sqlite_catalog, tmp_path):
    import pytest

    from curation.errors import InputError

    build_case(sqlite_catalog, tmp_path / "img")
    with pytest.raises(InputError, match=r"model version 'nope'.*known: m1"):
        collect_records(sqlite_catalog, model_version="nope")


def test_view_urls_use_the_dataset_and_slug(settings_env):
    urls = view_urls(settings_env, port=5199)
    assert urls["false-positives"] == "http://127.0.0.1:5199/datasets/beltcurate?view=false-positives"
    assert urls["dataset"] == "http://127.0.0.1:5199/datasets/beltcurate"


def test_match_any_boxes_tells_confusions_from_misses_and_false_positives():
    from curation.review import match_any_boxes

    gt = [{"xywh_px": [0, 0, 10, 10], "label": "battery"}, {"xywh_px": [50, 50, 10, 10], "label": "paper"}]
    preds = [
        {"xywh_px": [0, 0, 10, 10], "label": "aluminum_can", "score": 0.9},  # confusion with battery
        {"xywh_px": [1, 0, 10, 10], "label": "battery", "score": 0.5},  # duplicate: battery is taken
        {"xywh_px": [80, 80, 10, 10], "label": "film", "score": 0.7},  # nothing there
    ]
    pred_info, gt_info = match_any_boxes(gt, preds)
    assert [p["match"] for p in pred_info] == ["confusion", "fp", "fp"]
    assert pred_info[0]["label"] == "battery" and pred_info[0]["iou"] == 1.0
    assert [g["match"] for g in gt_info] == ["confusion", "fn"]
    assert gt_info[0]["label"] == "aluminum_can"


def test_match_any_boxes_most_confident_prediction_wins():
    from curation.review import match_any_boxes

    gt = [{"xywh_px": [0, 0, 10, 10], "label": "glass"}]
    preds = [{"xywh_px": [0, 0, 10, 9], "label": "film", "score": 0.3},
             {"xywh_px": [0, 0, 10, 8], "label": "glass", "score": 0.8}]
    pred_info, gt_info = match_any_boxes(gt, preds)
    assert [p["match"] for p in pred_info] == ["fp", "tp"]
    assert gt_info[0] == {"match": "tp", "iou": 0.8, "label": "glass"}


def test_match_any_boxes_needs_iou_threshold():
    from curation.review import match_any_boxes

    gt = [{"xywh_px": [0, 0, 10, 10], "label": "glass"}]
    just_under = [{"xywh_px": [0, 0, 10, 4.9], "label": "glass", "score": 0.9}]  # IoU 0.49
    at = [{"xywh_px": [0, 0, 10, 5], "label": "glass", "score": 0.9}]  # IoU 0.5
    assert match_any_boxes(gt, just_under)[0][0]["match"] == "fp"
    assert match_any_boxes(gt, at)[0][0]["match"] == "tp"
