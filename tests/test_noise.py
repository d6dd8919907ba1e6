"""Label noise: confident learning flags planted label errors; prune / reweight plumb through."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from training.noise import clean_labels, confident_flags, find_label_issues
from training.train import _per_head_rows, fit_lead_model, train

CLASSES = np.array(["a", "b", "c"], dtype=object)


def _blobs(n: int = 900, flip: float = 0.15, seed: int = 0):
    """Three well separated classes on two numeric columns, ``flip`` of the labels changed."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    centers = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    X = pd.DataFrame(centers[truth] + rng.normal(0, 1.0, (n, 2)), columns=["u", "v"])
    X["noise"] = rng.normal(size=n)
    given = truth.copy()
    wrong = rng.random(n) < flip
    given[wrong] = (truth[wrong] + rng.integers(1, 3, wrong.sum())) % 3
    return X, CLASSES[given], CLASSES[truth], given != truth


def test_flags_planted_label_errors_far_better_than_chance():
    X, given, _, wrong = _blobs()
    issues = find_label_issues(X, given, n_estimators=30, seed=0)
    flagged = issues.flagged
    precision = wrong[flagged].mean()
    recall = flagged[wrong].mean()
    assert wrong.mean() < 0.2
    assert precision > 0.7  # chance: the noise rate, about 0.15
    assert recall > 0.6
    # a flagged row's suggested label is mostly the true one
    _, _, truth, _ = _blobs()
    assert (issues.suggested[flagged & wrong] == truth[flagged & wrong]).mean() > 0.8
    assert np.all(issues.suggested[~flagged] == None)  # noqa: E711


def test_same_seed_same_flags_and_another_seed_other_folds():
    X, given, _, _ = _blobs()
    one = find_label_issues(X, given, n_estimators=30, seed=4)
    two = find_label_issues(X, given, n_estimators=30, seed=4)
    other = find_label_issues(X, given, n_estimators=30, seed=5)
    np.testing.assert_array_equal(one.flagged, two.flagged)
    np.testing.assert_allclose(one.proba, two.proba)
    assert not np.allclose(one.proba, other.proba)


def test_confident_flags_follow_the_per_class_thresholds():
    # class thresholds: mean self-confidence of class 0 rows = 0.6, class 1 rows = 0.7
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
    y = np.array([0, 0, 0, 1, 1, 1])
    thresholds, flagged, suggested = confident_flags(proba, y, min_keep_share=0.0)
    np.testing.assert_allclose(thresholds, [0.6, (0.2 + 0.7 + 0.5) / 3])
    # row 1: p(0)=0.3 < 0.6 and p(1)=0.7 >= 0.467 → flagged, suggests 1
    # row 2: p(0)=0.6 is not below its threshold → kept
    # row 3: p(1)=0.2 < 0.467 and p(0)=0.8 >= 0.6 → flagged, suggests 0
    # row 5: p(1)=0.5 >= 0.467 → kept
    assert flagged.tolist() == [False, True, False, True, False, False]
    assert suggested.tolist() == [-1, 1, -1, 0, -1, -1]


def test_every_class_keeps_its_floor_of_rows():
    # five of six class-1 rows look like class 0: without a floor all five would go
    p1 = np.array([0.5, 0.08, 0.07, 0.06, 0.05, 0.04])
    proba = np.vstack([[[0.9, 0.1]] * 6, np.column_stack([1 - p1, p1])])
    y = np.array([0] * 6 + [1] * 6)
    _, unfloored, _ = confident_flags(proba, y, min_keep_share=0.0)
    assert unfloored[6:].tolist() == [False, True, True, True, True, True]
    _, flagged, _ = confident_flags(proba, y, min_keep_share=0.5)
    # at most half may go: the least self-confident three
    assert flagged[6:].tolist() == [False, False, False, True, True, True]
    assert not flagged[:6].any()


@pytest.mark.parametrize("mode", ["prune", "reweight"])
def test_prune_and_reweight_keep_every_class(mode):
    X, given, _, _ = _blobs(n=600, flip=0.3, seed=2)
    # a small class, half of it mislabelled from the others
    given = given.copy()
    given[:12] = "rare"
    y = {"stage": given, "persona": None}
    result = clean_labels(X, y, mode, n_estimators=20, seed=0)
    assert result.y["persona"] is None
    kept = result.y["stage"]
    weights = result.weights["stage"]
    assert sum(result.flagged["stage"].values()) > 50
    if mode == "prune":
        assert set(kept[kept != None]) == {"a", "b", "c", "rare"}  # noqa: E711
        assert (kept == None).sum() == sum(result.flagged["stage"].values())  # noqa: E711
        assert np.all(weights == 1.0)
    else:
        np.testing.assert_array_equal(kept, given)
        assert np.all((weights > 0) & (weights <= 1))
        assert (weights < 1).sum() == sum(result.flagged["stage"].values())
        for label in ("a", "b", "c", "rare"):
            assert weights[given == label].sum() > 0.4 * (given == label).sum()
    metrics = result.metrics()
    assert metrics["stage_label_noise_flagged"] == sum(result.flagged["stage"].values())
    assert "stage_label_noise_flagged__rare" in metrics


def test_none_changes_nothing_and_a_bad_mode_is_refused():
    X, given, _, _ = _blobs(n=200)
    result = clean_labels(X, {"stage": given, "persona": None}, "none")
    np.testing.assert_array_equal(result.y["stage"], given)
    assert result.flagged == {} and np.all(result.weights["stage"] == 1)
    with pytest.raises(ValueError, match="label_noise must be one of"):
        clean_labels(X, {"stage": given}, "drop")


def test_per_head_rows_fit_exactly_like_one_fit_with_unit_weights():
    from model.classifier import HeadClassifier, TwoHeadClassifier

    X, stage, _, _ = _blobs(n=400, seed=3)
    persona = np.where(X["v"].to_numpy() > 2, "p", "q").astype(object)
    persona[::7] = None  # rows without a persona label
    plain = clean_labels(X, {"stage": stage, "persona": persona}, "none")

    def fitted(X_, s_, p_, w_):
        heads = {"n_estimators": 15, "num_threads": 1}
        clf = TwoHeadClassifier(
            stage_estimator=HeadClassifier(**heads), persona_estimator=HeadClassifier(**heads)
        )
        return clf.fit(X_, y_stage=s_, y_persona=p_, sample_weight=w_)

    stacked = _per_head_rows(X, plain, None)
    assert len(stacked[0]) == 2 * len(X)
    one = fitted(X, stage, persona, None).predict_proba(X)
    two = fitted(*stacked).predict_proba(X)
    for head in ("stage", "persona"):
        np.testing.assert_allclose(one[head], two[head])


@pytest.fixture(scope="module")
def crm(crm_export):
    export = crm_export("crm-noise", 600)
    return export.root, export.config(n_estimators=20, gate=False)


@pytest.mark.slow
def test_the_option_plumbs_through_train_to_mlflow(crm):
    from mlflow import MlflowClient

    _, config = crm
    result = train(replace(config, label_noise="prune", run_name="prune"))
    run = MlflowClient().get_run(result.run_id)
    assert run.data.params["label_noise"] == "prune"
    flagged = run.data.metrics["stage_label_noise_flagged"]
    per_class = [
        v for k, v in run.data.metrics.items() if k.startswith("stage_label_noise_flagged__")
    ]
    assert flagged > 0 and sum(per_class) == flagged
    assert "persona_label_noise_flagged" in run.data.metrics

    plain = train(replace(config, label_noise="none", run_name="none"))
    assert "stage_label_noise_flagged" not in MlflowClient().get_run(plain.run_id).data.metrics


@pytest.mark.slow
def test_fit_lead_model_records_what_it_flagged_per_mode(crm):
    from training.dataset import load_training_table

    _, config = crm
    ts = load_training_table(
        config.leads_path,
        events_path=config.events_path,
        id_col=config.id_col,
        stage_col=config.stage_col,
        persona_col=config.persona_col,
        exclude=config.exclude,
    )
    none = fit_lead_model(ts, replace(config, label_noise="none"))
    reweight = fit_lead_model(ts, replace(config, label_noise="reweight"))
    assert "label_noise" not in none.metadata
    info = reweight.metadata["label_noise"]
    assert info["mode"] == "reweight" and set(info["flagged"]) == {"stage", "persona"}
    X = ts.X.head(50)
    p_none = none.classifier.predict_proba(X)["stage"]
    p_re = reweight.classifier.predict_proba(X)["stage"]
    assert p_re.shape == p_none.shape and not np.allclose(p_re, p_none)


@pytest.mark.slow
def test_leadready_train_takes_label_noise(crm, monkeypatch, tmp_path):
    from mlflow import MlflowClient

    from leadready.cli import main

    root, _ = crm
    monkeypatch.setenv("LEADREADY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["train", "--leads", str(root / "contacts.csv"), "--id-col", "Contact ID"]
    args += ["--stage-col", "Lifecycle Stage", "--persona-col", "Segment"]
    args += ["--exclude", "Email,Converted", "--n-estimators", "10", "--no-gate", "--no-compile"]
    bad = CliRunner().invoke(main, [*args, "--label-noise", "drop"])
    assert bad.exit_code != 0 and "drop" in bad.output
    result = CliRunner().invoke(main, [*args, "--label-noise", "reweight"])
    assert result.exit_code == 0, result.output
    client = MlflowClient()
    run_id = client.get_model_version("lead-readiness", "1").run_id
    assert client.get_run(run_id).data.params["label_noise"] == "reweight"
    assert client.get_run(run_id).data.metrics["persona_label_noise_flagged"] >= 0


@pytest.mark.parametrize("mode", ["prune", "reweight"])
def test_trusted_rows_are_never_flagged(mode):
    X, given, _, wrong = _blobs(n=600, flip=0.2, seed=5)
    y = {"stage": given, "persona": None}
    free = clean_labels(X, y, mode, n_estimators=20, seed=0)
    trusted = wrong.copy()  # the mislabelled rows, as if a rep had vouched for them
    # weighed like the others, so the only difference is that they cannot be flagged
    kept = clean_labels(X, y, mode, n_estimators=20, seed=0, trusted=trusted, trusted_weight=1.0)
    assert sum(free.flagged["stage"].values()) > 40
    assert sum(kept.flagged["stage"].values()) < sum(free.flagged["stage"].values()) / 3
    np.testing.assert_array_equal(kept.y["stage"][trusted], given[trusted])
    assert np.all(kept.weights["stage"][trusted] == 1.0)
    with pytest.raises(ValueError, match="trusted has 3 rows"):
        clean_labels(X, y, mode, trusted=[True, False, True])


def test_folds_follow_the_lead_id_not_the_labels():
    """A retrain that changes a few labels leaves every other row in its fold."""
    from training.noise import _hash_folds, out_of_fold_proba

    X, given, _, _ = _blobs(n=400)
    X.index = [f"L{i:05d}" for i in range(len(X))]
    folds = _hash_folds(list(X.index), 2, seed=0)
    assert 0.4 < folds.mean() < 0.6
    np.testing.assert_array_equal(folds, _hash_folds(list(X.index), 2, seed=0))
    assert not np.array_equal(folds, _hash_folds(list(X.index), 2, seed=1))
    changed = given.copy()
    changed[:5] = np.where(changed[:5] == "a", "b", "a")
    _, one = out_of_fold_proba(X, given, n_estimators=20, fold_keys=list(X.index))
    _, two = out_of_fold_proba(X, changed, n_estimators=20, fold_keys=list(X.index))
    # the rows of the fold the changed rows sit in keep their probabilities exactly
    # (they are predicted by the model of the other fold, which did not change)
    same_fold = folds == folds[0]
    if np.all(folds[:5] == folds[0]):
        np.testing.assert_allclose(one[same_fold], two[same_fold])
    # clean_labels takes the index as the fold key
    result = clean_labels(X, {"stage": given, "persona": None}, "reweight", n_estimators=20)
    again = clean_labels(
        X.reset_index(drop=True), {"stage": given, "persona": None}, "reweight", n_estimators=20
    )
    assert result.flagged and again.flagged


def test_corrections_teach_the_cleaning_to_flag_marketings_systematic_mistake():
    """Marketing calls every "b" far out on u a "c"; a few reps' corrections there say "b".

    Weighted in the out-of-fold fits, those corrections make the other "c"
    labels of that region improbable, so they are flagged — the systematic
    mistake the marketing-only fits had learned as the rule.
    """
    X, given, truth, _ = _blobs(n=1200, flip=0.05, seed=3)
    region = (truth == "b") & (X["u"].to_numpy() > 4.0)
    given = given.copy()
    given[region] = "c"
    rows = np.flatnonzero(region)
    trusted = np.zeros(len(X), dtype=bool)
    trusted[rows[: len(rows) // 5]] = True
    labels = given.copy()
    labels[trusted] = "b"  # the reps' labels
    rest = region & ~trusted
    y = {"stage": labels, "persona": None}

    def flagged_in_region(weight):
        issues = clean_labels(
            X, y, "reweight", n_estimators=20, seed=0, trusted=trusted, trusted_weight=weight
        )
        return (issues.weights["stage"][rest] < 1).mean()

    assert rest.sum() > 40
    unweighted = flagged_in_region(1.0)
    assert unweighted < 0.05  # learned as the rule
    assert flagged_in_region(8.0) > unweighted + 0.12
