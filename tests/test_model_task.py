"""A model's task: computed from the package, compared, and enforced by the serving holder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from model.task import ModelTask, task_from_tags, task_tags
from serve.holder import ModelHolder
from training.gate_stats import compare_head, macro_f1

DEMO = ModelTask(
    labels={"stage": ("awareness", "consideration", "decision"), "persona": ("buyer", "user")},
    sales_ready=("decision",),
    inputs={"visits": "numeric", "title": "text"},
)
SHOPPERS = ModelTask(
    labels={"stage": ("False", "True"), "persona": ("New_Visitor", "Returning_Visitor")},
    sales_ready=("True",),
    inputs={"ExitRates": "numeric"},
)


def test_same_task_with_fewer_inputs_is_the_same_task():
    fewer = ModelTask(DEMO.labels, DEMO.sales_ready, {"visits": "numeric"})
    assert DEMO.differences(fewer) == []
    assert DEMO.input_changes(fewer) == {"added": [], "removed": ["title"]}


def test_other_labels_are_another_task_and_the_difference_is_said():
    diffs = DEMO.differences(SHOPPERS)
    assert any(d.startswith("stage labels differ") and "False" in d for d in diffs)
    assert any("persona labels differ" in d for d in diffs)
    assert any("sales-ready stages differ" in d for d in diffs)


def test_a_column_that_changed_kind_is_another_task():
    changed = ModelTask(DEMO.labels, DEMO.sales_ready, {"visits": "categorical"})
    assert DEMO.differences(changed) == [
        "input columns changed kind: 'visits' numeric → categorical"
    ]


def test_task_round_trips_through_registry_tags():
    tags = task_tags(DEMO)
    assert tags["leadready.task.stage_labels"] == "awareness,consideration,decision"
    assert task_from_tags(tags) == DEMO
    assert task_from_tags({}) is None


@pytest.fixture(scope="module")
def tiny_model():
    from data.simulate import SimulationConfig, simulate
    from model.features import build_features
    from tests.support.registry import fit_tiny_model

    sim = simulate(SimulationConfig(n_leads=200, seed=4))
    features = build_features(
        sim.leads.drop(columns=["stage", "persona"]), sim.events, as_of=sim.config.end
    )
    return fit_tiny_model(features, sim.leads, seed=4, trees=5)


def test_packaged_model_knows_its_task(tiny_model):
    task = tiny_model.task
    assert task.labels["stage"] == tuple(sorted(tiny_model.labels["stage"]))
    assert set(task.inputs) == set(tiny_model.input_columns)
    assert set(task.inputs.values()) <= {"numeric", "categorical", "text", "unused"}
    assert tiny_model.summary()["task"] == task.to_dict()


@dataclass
class _Fake:
    task: ModelTask


class _Registry:
    def __init__(self) -> None:
        self.version = "1"
        self.tasks = {"1": DEMO, "2": SHOPPERS, "3": DEMO}

    def load(self, uri: str):
        version = uri.rsplit("/", 1)[-1]
        return _Fake(self.tasks[version]), None, version

    def resolve(self, name: str, alias: str) -> str:
        return self.version


def test_holder_refuses_a_version_of_another_task_and_says_so(caplog):
    reg = _Registry()
    refused: list[tuple[str, list[str]]] = []
    holder = ModelHolder("models:/lr@champion", loader=reg.load, resolver=reg.resolve)
    holder.on_task_refusal(lambda v, d: refused.append((v, d)))
    assert holder.check() and holder.current.version == "1"
    reg.version = "2"
    with caplog.at_level("ERROR"):
        assert not holder.check()
    assert holder.current.version == "1"
    assert refused and refused[0][0] == "2" and "stage labels differ" in refused[0][1][0]
    assert "does another task" in caplog.text and "LEADREADY_ALLOW_TASK_CHANGE" in caplog.text
    assert holder.refused_task[0] == "2"
    reg.version = "3"  # back to a version of the served task: swapped in
    assert holder.check() and holder.current.version == "3"


def test_holder_swaps_another_task_when_told_to():
    reg = _Registry()
    holder = ModelHolder(
        "models:/lr@champion", loader=reg.load, resolver=reg.resolve, allow_task_change=True
    )
    assert holder.check()
    reg.version = "2"
    assert holder.check() and holder.current.version == "2"


def test_bootstrap_macro_f1_matches_sklearn_and_calls_noise_noise():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    truth = rng.choice(["a", "b", "c"], size=300)
    pred = np.where(rng.random(300) < 0.7, truth, rng.choice(["a", "b", "c"], size=300))
    expected = f1_score(truth, pred, average="macro", labels=sorted(set(truth) | set(pred)))
    assert macro_f1(truth, pred) == pytest.approx(expected)
    # Two models that differ on 2 of 15 leads: inside the noise.
    small_truth = truth[:15]
    other = small_truth.copy()
    other[:2] = "z"
    comp = compare_head("stage", small_truth, other, small_truth)
    assert comp.n == 15 and comp.verdict == "inside the noise" and comp.inside_noise
    lo, hi = comp.difference_interval
    assert lo < 0 <= hi
    # The same gap on 3,000 leads is outside the noise.
    big_truth = np.tile(truth, 10)
    worse = big_truth.copy()
    worse[::5] = "z"
    assert compare_head("stage", big_truth, worse, big_truth).verdict == "worse"
