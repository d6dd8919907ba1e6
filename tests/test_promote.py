"""The promotion gate's rules, and alias moves in a throwaway MLflow registry."""

from __future__ import annotations

import pytest

from training.promote import gate


def _metrics(f1: float, recalls: dict[str, float], n: int = 100) -> dict:
    return {
        "n": n,
        "macro_f1": f1,
        "per_class": {k: {"recall": r, "support": 10} for k, r in recalls.items()},
    }


def test_first_version_is_promoted_without_a_champion():
    decision = gate({"stage": _metrics(0.5, {"a": 0.5})}, None)
    assert decision.promote
    assert "no champion" in decision.reasons[0]


def test_equal_or_better_challenger_passes():
    champ = {"stage": _metrics(0.70, {"a": 0.7, "b": 0.6})}
    chall = {"stage": _metrics(0.695, {"a": 0.66, "b": 0.7})}
    decision = gate(chall, champ, f1_tolerance=0.01, recall_margin=0.05)
    assert decision.promote, decision.reasons


def test_lower_macro_f1_is_refused():
    champ = {"stage": _metrics(0.70, {"a": 0.7})}
    chall = {"stage": _metrics(0.68, {"a": 0.7})}
    decision = gate(chall, champ, f1_tolerance=0.01)
    assert not decision.promote
    assert any("macro-F1 0.680 is below" in r for r in decision.reasons)


def test_one_class_recall_drop_is_refused_even_with_better_f1():
    champ = {"persona": _metrics(0.60, {"buyer": 0.8, "user": 0.4})}
    chall = {"persona": _metrics(0.65, {"buyer": 0.7, "user": 0.6})}
    decision = gate(chall, champ, recall_margin=0.05)
    assert not decision.promote
    assert any("'buyer' 0.800 → 0.700" in r for r in decision.reasons)


def test_a_head_the_challenger_lost_is_refused():
    champ = {"stage": _metrics(0.7, {"a": 0.7}), "persona": _metrics(0.6, {"b": 0.6})}
    chall = {"stage": _metrics(0.8, {"a": 0.8})}
    decision = gate(chall, champ)
    assert not decision.promote
    assert any("persona" in r and "no persona head" in r for r in decision.reasons)


def test_different_gate_sets_are_refused():
    champ = {"stage": _metrics(0.7, {"a": 0.7}, n=100)}
    chall = {"stage": _metrics(0.9, {"a": 0.9}, n=90)}
    assert not gate(chall, champ).promote


@pytest.mark.parametrize("tolerance", [0.0, 0.02])
def test_tolerance_is_respected_at_the_edge(tolerance):
    champ = {"stage": _metrics(0.70, {"a": 0.7})}
    chall = {"stage": _metrics(0.70 - tolerance, {"a": 0.7})}
    assert gate(chall, champ, f1_tolerance=tolerance).promote
    worse = {"stage": _metrics(0.70 - tolerance - 0.001, {"a": 0.7})}
    assert not gate(worse, champ, f1_tolerance=tolerance).promote
