"""``bench.similar`` in small: it runs, and the planted mistake is what the model ranks first."""

from __future__ import annotations

import pytest

from bench.similar import run


@pytest.mark.slow
def test_the_similar_benchmark_runs_small_and_finds_the_planted_mistake():
    result = run(n_leads=1000, n_corrections=150, runs=1, seed=3)
    assert set(result["cases"]) == {
        "build_model",
        "build_cached",
        "build_neighbours",
        "lead_block",
        "suggestions_page",
    }
    model = result["correction_model_set"]
    assert model["method"] == "correction_model"
    assert model["n_reviewed"] >= 150
    # Students served practitioner are the planted mistake: the model puts them first,
    # well above their share among the candidates.
    share = result["top50_share_of_planted_mistake"]["correction_model"]
    assert share >= 0.9 > result["base_rate_students_among_candidates"] + 0.2
    assert result["neighbours_set"]["method"] == "neighbours"
