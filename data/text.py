"""The one rule for text that every store accepts: no NUL and no lone surrogate, refused at
the HTTP door and again by the store (docs/design/data.md).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

__all__ = [
    "bad_text_reason",
    "check_text",
    "find_bad_text",
    "like_pattern",
    "name_skeleton",
    "user_name_problem",
]

_BAD = re.compile("[\x00\ud800-\udfff]")


def bad_text_reason(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None when it can."""
    match = _BAD.search(text)
    if match is None:
        return None
    char = match.group()
    if char == "\x00":
        return "contains a NUL character (U+0000), which text fields cannot hold"
    return f"contains a lone surrogate (U+{ord(char):04X}), which is not valid Unicode text"


def check_text(text: str, name: str) -> str:
    """``text`` unchanged, or :class:`ValueError` naming ``name`` and the reason."""
    reason = bad_text_reason(text)
    if reason is not None:
        raise ValueError(f"{name}: {reason}")
    return text


def like_pattern(text: str) -> str:
    """A LIKE pattern (escape character ``\\``) matching ``text`` lower-cased anywhere,
    its ``%`` and ``_`` matching themselves."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def find_bad_text(
    value: Any, path: tuple[str | int, ...] = ()
) -> tuple[tuple[str | int, ...], str] | None:
    """The location and reason of the first unstorable string in a parsed JSON value.

    Keys and values are both checked; the path is a tuple of keys and list
    indices (``("leads", 3, "lead", "company")``). Iterative, so deeply nested
    input cannot exhaust the stack.
    """
    stack: list[tuple[tuple[str | int, ...], Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if (reason := bad_text_reason(item)) is not None:
                return where, reason
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                if isinstance(key, str) and (reason := bad_text_reason(key)) is not None:
                    return (*where, key), reason
                children.append(((*where, key), child))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([((*where, i), child) for i, child in enumerate(item)]))
    return None


def user_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a user name (a look-alike risk), or None.

    Refused: text that NFKC normalisation changes (``ｄｅｍｏ``, ``ﬁ``), control and
    invisible format characters (zero-width joiners, bidi marks), and letters of
    more than one script (Latin ``demo-rep`` with a Cyrillic ``е``).
    """
    if unicodedata.normalize("NFKC", name) != name:
        return "must be in Unicode NFKC form (no full-width, ligature or compatibility characters)"
    scripts = set()
    for ch in name:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Co", "Cs", "Cn"):
            return f"must not contain invisible or control characters (U+{ord(ch):04X})"
        if category.startswith("L"):
            scripts.add(unicodedata.name(ch, "UNKNOWN").split()[0])
    # Latin with CJK or Hangul is ordinary (UTS #39 "highly restrictive" allows it);
    # two of the alphabets whose letters look alike is how look-alike names are made.
    mixed = scripts & _LOOKALIKE_SCRIPTS
    if len(mixed) > 1:
        return f"mixes letters of several alphabets ({', '.join(sorted(mixed))})"
    return None


#: Alphabets with many letters that look like another's (Latin a, Cyrillic а, Greek α).
_LOOKALIKE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC"})


def name_skeleton(name: str) -> str:
    """A folded form of a user name: two names with one skeleton look alike.

    NFKC, case folded, every dash-like character (``-``, U+2010–U+2015, U+2212 …)
    as ``-`` and every space-like one as a space, so ``demo‑rep`` (U+2011) and
    ``Demo-Rep`` fold to ``demo-rep``.
    """
    out = []
    for ch in unicodedata.normalize("NFKC", name).casefold():
        category = unicodedata.category(ch)
        if category == "Pd" or ch == "\u2212":
            out.append("-")
        elif category == "Zs":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)
