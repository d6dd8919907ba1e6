"""Seniority and function from job titles: the rule table, and one title == a column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.titles import (
    FUNCTION_RULES,
    FUNCTIONS,
    SENIORITIES,
    SENIORITY_RULES,
    TITLE_FEATURES,
    parse_title,
    parse_titles,
)

TABLE = [
    ("VP of Engineering", "vp", "engineering"),
    ("Vice President, Sales", "vp", "sales"),
    ("V.P. Marketing", "vp", "marketing"),
    ("Student", "student", "education"),
    ("MBA Student", "student", "education"),
    ("Intern", "student", "other"),
    ("CFO", "c_level", "finance"),
    ("Chief Executive Officer", "c_level", "executive"),
    ("Chief Technology Officer", "c_level", "engineering"),
    ("Co-Founder & CTO", "c_level", "engineering"),
    ("Chief Information Security Officer", "c_level", "it"),
    ("Director of IT", "director", "it"),
    ("Senior Director, Finance", "director", "finance"),
    ("Head of Procurement", "head", "procurement"),
    ("Head of People", "head", "hr"),
    ("Marketing Manager", "manager", "marketing"),
    ("Senior Manager, Demand Generation", "manager", "marketing"),
    ("Product Owner", "senior_ic", "other"),
    ("Senior Software Engineer", "senior_ic", "engineering"),
    ("Principal Data Scientist", "senior_ic", "data"),
    ("Data Scientist", "ic", "data"),
    ("Account Executive", "ic", "sales"),
    ("Sales Development Representative", "ic", "sales"),
    ("Financial Analyst", "ic", "finance"),
    ("Executive Assistant to the CEO", "ic", "executive"),
    ("Professor of Physics", "ic", "education"),
    ("DIRECTOR OF OPERATIONS", "director", "operations"),
    ("  head of it  ", "head", "it"),
    ("Looking for opportunities", "unknown", "other"),
    ("", "unknown", "other"),
    ("   ", "unknown", "other"),
    (None, "unknown", "other"),
]


@pytest.mark.parametrize(("title", "seniority", "function"), TABLE)
def test_title_table(title: str | None, seniority: str, function: str) -> None:
    assert parse_title(title) == (seniority, function)


def test_column_gives_the_same_labels_as_one_title_at_a_time() -> None:
    titles = pd.Series([t for t, _, _ in TABLE] + [float("nan"), 42, "CFO"], index=range(10, 45))
    frame = parse_titles(titles)
    assert list(frame.columns) == list(TITLE_FEATURES)
    assert frame.index.equals(titles.index)
    assert list(zip(frame["title_seniority"], frame["title_function"], strict=True)) == [
        parse_title(t) for t in titles
    ]
    expected = [(s, f) for _, s, f in TABLE] + [("unknown", "other")] * 2 + [("c_level", "finance")]
    assert list(zip(frame["title_seniority"], frame["title_function"], strict=True)) == expected


def test_column_of_a_text_dtype_and_an_empty_column() -> None:
    titles = pd.Series(["VP of Sales", None, "Student"], dtype="str")
    assert parse_titles(titles)["title_seniority"].tolist() == ["vp", "unknown", "student"]
    empty = parse_titles(pd.Series([], dtype=object))
    assert empty.shape == (0, 2)
    missing = parse_titles(pd.Series([None, np.nan], dtype=object))
    assert missing["title_function"].tolist() == ["other", "other"]


def test_rule_labels_are_in_the_vocabulary() -> None:
    assert {label for label, _ in SENIORITY_RULES} | {"unknown"} == set(SENIORITIES)
    assert {label for label, _ in FUNCTION_RULES} | {"other"} == set(FUNCTIONS)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text(max_size=30),
            st.sampled_from([t for t, _, _ in TABLE if t]).map(lambda t: f"x {t.upper()} y"),
        ),
        max_size=20,
    )
)
def test_any_titles_column_agrees_with_one_title_at_a_time(titles: list[str | None]) -> None:
    frame = parse_titles(pd.Series(titles, dtype=object))
    got = list(zip(frame["title_seniority"], frame["title_function"], strict=True))
    assert got == [parse_title(t) for t in titles]
    assert set(frame["title_seniority"]) <= set(SENIORITIES)
    assert set(frame["title_function"]) <= set(FUNCTIONS)


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Directeur Financier", ("director", "finance")),
        ("Directrice Générale", ("c_level", "executive")),
        ("Responsable marketing", ("head", "marketing")),
        ("Stagiaire RH", ("student", "hr")),
        ("Leiter Einkauf", ("head", "procurement")),
        ("Geschäftsführer", ("c_level", "executive")),
        ("Entwicklerin", ("ic", "engineering")),
        ("Jefe de Ventas", ("head", "sales")),
        ("Analista de datos", ("ic", "data")),
        ("Gerente de TI", ("manager", "it")),
        ("Diretora Financeira", ("director", "finance")),
        ("Hoofd Inkoop", ("head", "procurement")),
        ("Medewerker verkoop", ("ic", "sales")),
    ],
)
def test_titles_in_french_german_spanish_portuguese_dutch(title, expected):
    assert parse_title(title) == expected
    assert parse_titles(pd.Series([title])).iloc[0].tolist() == list(expected)
