"""The report's sentences, one function at a time: each branch's exact words and numbers."""

from __future__ import annotations

import pytest

from mixstudy.report import compare_in_words


@pytest.mark.parametrize("ours, published, expected", [
    (58.774, 61.73, "X: ours, 58.77 %, is 2.96 percentage points lower than the published 61.73 %."),
    (62.0, 61.73, "X: ours, 62.00 %, is 0.27 percentage points higher than the published 61.73 %."),
    (61.734, 61.73, "X: ours, 61.73 %, equals the published 61.73 %."),
    # 61.736 prints as 61.74: the words follow the printed numbers, not the hidden digits
    (61.736, 61.732, "X: ours, 61.74 %, is 0.01 percentage points higher than the published 61.73 %."),
    (61.0, 62.0, "X: ours, 61.00 %, is 1.00 percentage points lower than the published 62.00 %."),
])
def test_ours_against_published_in_words(ours, published, expected):
    assert compare_in_words("X", ours, published) == expected


def test_a_number_the_study_does_not_publish_is_said_so():
    assert compare_in_words("X", None, None) == "X: the study publishes no number."
    assert compare_in_words("X", 55.555, None) == "X: the study publishes no number. Ours: 55.55 %."


def test_no_finished_runs_is_said_so_and_nothing_is_filled_in():
    assert compare_in_words("X", None, 61.73) == (
        "X: no finished runs yet, so nothing stands beside the published 61.73 %.")
