"""The UI's words for labels and dates (review_ui.words)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from review_ui.words import day_words, label_words, when_words


@pytest.mark.parametrize(
    ("label", "words"),
    [
        ("economic_buyer", "Economic buyer"),
        ("technical_evaluator", "Technical evaluator"),
        ("non-buyer", "Non buyer"),
        ("decision", "Decision"),
        ("Already Words", "Already Words"),
        ("job seeker", "job seeker"),
    ],
)
def test_labels_read_as_words(label, words):
    assert label_words(label) == words


def test_a_missing_label_reads_as_the_empty_word():
    assert label_words(None) == "—"
    assert label_words("  ") == "—"
    assert label_words(None, "unset") == "unset"


def test_times_read_in_utc_for_people():
    moment = datetime(2026, 12, 4, 18, 58, 31, tzinfo=timezone(timedelta(hours=2)))
    assert when_words(moment) == "4 Dec 2026, 16:58 UTC"
    assert when_words(datetime(2026, 1, 9, 7, 5)) == "9 Jan 2026, 07:05 UTC"
    assert day_words(datetime(2026, 12, 31, 23, 30, tzinfo=UTC)) == "31 Dec 2026"
    assert day_words(date(2026, 2, 1)) == "1 Feb 2026"
    assert when_words(date(2026, 2, 1)) == "1 Feb 2026"
    assert when_words(None) == day_words(None) == "—"
    # Times kept as ISO text (alias-move tags, job records) read the same way.
    assert when_words("2026-12-04T20:37:39.788377+00:00") == "4 Dec 2026, 20:37 UTC"
    assert when_words("2026-12-04T21:37:39+01:00") == "4 Dec 2026, 20:37 UTC"
    assert when_words("not a time") == "not a time"
