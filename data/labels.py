"""One label policy for every entry point (training, the corrections API, the review UI and
``corrections import``): which spellings are one label, and its readable name (docs/design/data.md).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["label_key", "match_label", "merge_label_variants"]

_NOISE = re.compile(r"[\s\-_]+")
#: CRM abbreviations that are the same lifecycle stage as their long form.
_ALIASES = {
    "mql": "marketingqualifiedlead",
    "sql": "salesqualifiedlead",
    "sal": "salesacceptedlead",
    "opp": "opportunity",
}


def label_key(label: object) -> str:
    """The comparison key of a label: case-folded, without white space, ``-`` or ``_``
    (and a CRM abbreviation — MQL, SQL, SAL — as its long form)."""
    key = _NOISE.sub("", str(label)).casefold()
    return _ALIASES.get(key, key)


def match_label(label: object, known: Iterable[str]) -> str | None:
    """The known label ``label`` is a spelling of, or None."""
    key = label_key(label)
    return next((str(k) for k in known if key and label_key(k) == key), None)


#: How CRMs (HubSpot, Salesforce, Marketo) show their lifecycle stages, by label key.
LIFECYCLE_NAMES: dict[str, str] = {
    "subscriber": "Subscriber",
    "lead": "Lead",
    "marketingqualifiedlead": "Marketing Qualified Lead",
    "salesacceptedlead": "Sales Accepted Lead",
    "salesqualifiedlead": "Sales Qualified Lead",
    "opportunity": "Opportunity",
    "customer": "Customer",
    "evangelist": "Evangelist",
    "other": "Other",
}


def readable_name(spellings: Sequence[str], counts: Mapping[str, int]) -> str:
    """The spelling a class is named by: words kept apart (when some spelling has
    them apart), not in capitals (but a short abbreviation), with a capital letter,
    no surrounding space; then the most frequent, then the first seen."""
    spaced = any(_NOISE.search(s.strip()) for s in spellings)

    def rank(s: str) -> tuple[bool, bool, bool, bool, int, int]:
        inner = s.strip()
        return (
            not spaced or bool(_NOISE.search(inner)),
            not (inner.isupper() and len(inner) > 4),
            inner != inner.lower(),  # "Open - Not Contacted" over "open - not contacted"
            inner == s,
            counts.get(s, 0),
            -spellings.index(s),
        )

    return max(spellings, key=rank)


def merge_label_variants(values: pd.Series) -> tuple[pd.Series, dict[str, list[str]]]:
    """Merge the spellings of each label of ``values`` (text, missing = None) into one, named
    by :func:`readable_name` (or, for CRM lifecycle stages, by :data:`LIFECYCLE_NAMES`).

    Returns the labels with every spelling replaced by its class name, and for each class
    that had several spellings, the spellings found (class name first).
    """
    # Spellings in order of first appearance, with how often each occurs; the rows
    # are only coded (factorize), every decision is made on the distinct spellings.
    codes, uniques = pd.factorize(values)
    spellings_seen = [str(u) for u in uniques]
    n_each = np.bincount(codes[codes >= 0], minlength=len(spellings_seen))
    counts = Counter(dict(zip(spellings_seen, n_each.tolist(), strict=True)))
    groups: dict[str, list[str]] = {}
    for spelling in spellings_seen:
        groups.setdefault(label_key(spelling), []).append(spelling)
    mapping: dict[str, str] = {}
    variants: dict[str, list[str]] = {}
    # A CRM lifecycle vocabulary whose spellings had to be merged is named as the CRM
    # shows it ("Sales Qualified Lead", not the internal "salesqualifiedlead").
    lifecycle = (
        bool(groups)
        and all(k in LIFECYCLE_NAMES for k in groups)
        and any(len(v) > 1 for v in groups.values())
    )
    for key, spellings in groups.items():
        name = LIFECYCLE_NAMES[key] if lifecycle else readable_name(spellings, counts)
        mapping.update(dict.fromkeys(spellings, name))
        others = [s for s in spellings if s != name]
        if others:
            variants[name] = [name, *others]
    names = np.array([mapping[u] for u in spellings_seen] + [None], dtype=object)
    return pd.Series(names[codes], index=values.index, dtype=object), variants


def describe_variants(head: str, variants: dict[str, list[str]]) -> list[str]:
    """``stage labels merged: 'lead' ← 'LEAD', ' Lead '`` lines for the report."""
    return [
        f"{head} labels merged (case, spaces, '-', '_', MQL/SQL ignored): {name!r} ← "
        + ", ".join(repr(s) for s in spellings[1:])
        for name, spellings in variants.items()
    ]


#: CRM lifecycle stages in order (keys as :func:`label_key` gives them, so MQL/SQL/SAL/opp
#: arrive as their long forms), with the spellings HubSpot, Salesforce and Marketo use;
#: the value is the rank.
LIFECYCLE_ORDER: dict[str, int] = {
    "subscriber": 0,
    "lead": 1,
    "newlead": 1,
    "rawlead": 1,
    "inquiry": 1,
    "marketingqualifiedlead": 2,
    "salesacceptedlead": 3,
    "salesqualifiedlead": 3,
    "opportunity": 4,
    "customer": 5,
    "closedwon": 5,
    "evangelist": 6,
}
#: The first lifecycle rank a sales team owns (SQL and later).
SALES_READY_RANK = 3
#: The demo's buying stages in order.
BUYING_ORDER = {"awareness": 0, "consideration": 1, "decision": 2, "purchase": 3}


def infer_stage_order(classes: Sequence[str]) -> tuple[tuple[str, ...], str] | None:
    """Sales-ready stages when the labels are a known ordered vocabulary.

    Returns ``(ready labels, a sentence saying what was inferred)``, or None when
    some label is not part of a known order (the caller then asks for ``--sales-ready``).
    """
    keys = {c: label_key(c) for c in classes}
    if len(set(keys.values())) < len(keys):
        return None  # spellings of one stage: merge them first (merge_label_variants)
    for order, first_ready, what in (
        (BUYING_ORDER, 2, "buying stages awareness → consideration → decision → purchase"),
        (
            LIFECYCLE_ORDER,
            SALES_READY_RANK,
            "CRM lifecycle stages subscriber → lead → MQL → SQL → opportunity → customer",
        ),
    ):
        if classes and all(k in order for k in keys.values()):
            ranked = sorted(classes, key=lambda c: order[keys[c]])
            ready = tuple(c for c in ranked if order[keys[c]] >= first_ready)
            if not ready or len(ready) == len(classes):
                return None
            return ready, (
                f"sales-ready stages inferred from the {what}: {', '.join(ready)} "
                f"(order read: {' → '.join(ranked)}); --sales-ready overrides"
            )
    return None
