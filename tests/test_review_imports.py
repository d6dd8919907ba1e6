"""No import circle among the review-loop modules (#21), function-local imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(module: str) -> set[str]:
    """Every module ``module`` imports anywhere in its file (top level or inside functions)."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("training.learned_queue", "training.retrain"),
        ("training.similar", "training.retrain"),
        ("training.label_trust", "training.retrain"),
        ("training.correction_model", "training.retrain"),
        ("training.rep_labels", "training.retrain"),
        ("bench.review_rounds", "bench.review_loop"),
        ("bench.review_sim", "bench.review_loop"),
        ("bench.review_sim", "bench.review_rounds"),
    ],
)
def test_module_does_not_import_upwards(module, forbidden):
    assert forbidden not in _imports(module)


def test_retrain_and_the_bench_share_one_label_trust_composition():
    # Both compose label trust through training.label_trust.apply_label_trust,
    # neither re-implements it from adjust_weights / soft_relabel.
    for module in ("training.retrain", "bench.review_rounds"):
        tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
        names = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "training.label_trust"
            for alias in node.names
        }
        assert "apply_label_trust" in names, module
        assert not names & {"adjust_weights", "soft_relabel", "marketing_doubt"}, module


def test_current_corrections_is_the_same_function_everywhere():
    import training.learned_queue as learned_queue
    import training.rep_labels as rep_labels
    import training.retrain as retrain

    assert retrain.current_corrections is rep_labels.current_corrections
    assert learned_queue.current_corrections is rep_labels.current_corrections
    assert retrain.CURRENT_COLUMNS == rep_labels.CURRENT_COLUMNS
