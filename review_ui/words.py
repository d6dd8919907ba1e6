"""Words and dates for people: one place for how a label or a time reads in the UI.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from data.values import as_utc

__all__ = ["day_words", "label_words", "when_words"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def label_words(label: str | None, empty: str = "—") -> str:
    """A label as words: ``economic_buyer`` → ``Economic buyer``; ``None`` → ``empty``.

    A label that already reads as words (has a space or a capital) is kept as it is.
    """
    if label is None or str(label).strip() == "":
        return empty
    text = str(label).strip()
    if " " in text or any(ch.isupper() for ch in text):
        return text
    words = text.replace("_", " ").replace("-", " ").split()
    joined = " ".join(words)
    return joined[:1].upper() + joined[1:]


def day_words(value: datetime | date | None) -> str:
    """``4 Dec 2026`` (UTC for a time); ``—`` for nothing."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        value = value.astimezone(UTC) if value.tzinfo else value
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"


def when_words(value: datetime | date | str | None) -> str:
    """``4 Dec 2026, 18:58 UTC`` (a naive time is taken as UTC); a date as :func:`day_words`.

    An ISO 8601 string (as the registry's audit tags and job records keep times) is
    read first; any other string is shown as it is.
    """
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(value, datetime):
        return day_words(value)
    moment = as_utc(value)
    return f"{day_words(moment)}, {moment:%H:%M} UTC"
