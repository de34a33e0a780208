"""Which annotation is current, disagreement, statuses, times (pure rules, no server)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from curation.labelstudio import LsAnnotation, annotation_status, boxes_agree, choose_current, parse_ls_time
from exporters.types import Box

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)


def _ann(ls_id: int, *, status="accepted", gt=False, minutes=0, boxes=None, who="a@x") -> LsAnnotation:
    boxes = boxes if boxes is not None else (Box((10, 10, 50, 40), "can"),)
    return LsAnnotation(f"1:1:{ls_id}", ls_id, status, gt, T0 + dt.timedelta(minutes=minutes), tuple(boxes), who)


def test_the_latest_accepted_annotation_wins():
    winner, problems = choose_current([_ann(1, minutes=0), _ann(2, minutes=5), _ann(3, minutes=2)])
    assert winner.ls_id == 2 and problems == []


def test_a_ground_truth_annotation_beats_a_later_one():
    winner, _ = choose_current([_ann(1, gt=True, minutes=0), _ann(2, minutes=9)])
    assert winner.ls_id == 1


def test_skipped_and_cancelled_annotations_never_win():
    winner, _ = choose_current([_ann(1, status="skipped", minutes=9, boxes=()), _ann(2, status="cancelled", minutes=8)])
    assert winner is None
    winner, _ = choose_current([_ann(1, status="skipped", minutes=9, boxes=()), _ann(2, minutes=1)])
    assert winner.ls_id == 2


def test_disagreement_is_reported_on_the_current_annotation():
    other = (Box((200, 10, 50, 40), "can"),)  # same label, no overlap
    winner, problems = choose_current([_ann(1, minutes=0, boxes=other, who="b@x"), _ann(2, minutes=5)])
    assert winner.ls_id == 2
    assert len(problems) == 1 and problems[0]["kind"] == "disagreement"
    assert "annotation 1 by b@x" in problems[0]["detail"]


def test_agreeing_annotations_are_not_a_disagreement():
    near = (Box((11, 11, 50, 40), "can"),)
    assert choose_current([_ann(1, boxes=near), _ann(2, minutes=1)])[1] == []


def test_boxes_agree_needs_same_labels_and_overlap_one_to_one():
    a = [Box((0, 0, 10, 10), "can"), Box((50, 50, 10, 10), "bottle")]
    assert boxes_agree(a, list(reversed(a)))
    assert not boxes_agree(a, [Box((0, 0, 10, 10), "bottle"), Box((50, 50, 10, 10), "can")])
    assert not boxes_agree(a, a[:1])
    assert not boxes_agree([Box((0, 0, 10, 10), "can")] * 2, [Box((0, 0, 10, 10), "can"), Box((30, 30, 10, 10), "can")])


def test_annotation_status():
    assert annotation_status(False, 0) == "accepted"  # an empty frame is a valid label
    assert annotation_status(True, 0) == "skipped"
    assert annotation_status(True, 2) == "cancelled"


def test_parse_ls_time_gives_naive_utc():
    assert parse_ls_time("2026-11-29T23:12:26.513897Z") == dt.datetime(2026, 11, 29, 23, 12, 26, 513897)
    assert parse_ls_time("2026-11-29T23:12:26+02:00") == dt.datetime(2026, 11, 29, 21, 12, 26)
    assert parse_ls_time(None) is None


_annotations = st.lists(
    st.builds(
        lambda ls_id, status, gt, minutes: _ann(ls_id, status=status, gt=gt, minutes=minutes),
        st.integers(1, 10_000), st.sampled_from(["accepted", "skipped", "cancelled"]), st.booleans(), st.integers(0, 50),
    ),
    max_size=6, unique_by=lambda a: a.ls_id,
)


@settings(max_examples=200, deadline=None)
@given(_annotations, st.randoms())
def test_choice_is_independent_of_order_and_always_an_accepted_one(annotations, rnd):
    winner, _ = choose_current(annotations)
    shuffled = list(annotations)
    rnd.shuffle(shuffled)
    assert choose_current(shuffled)[0] == winner
    accepted = [a for a in annotations if a.status == "accepted"]
    assert (winner is None) == (not accepted)
    if winner is not None:
        assert winner in accepted
        if any(a.ground_truth for a in accepted):
            assert winner.ground_truth
