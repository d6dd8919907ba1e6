"""Reasons through the API: exact TreeSHAP of the decided label, and a value the client
merely left out does not lead the list unless its contribution dominates."""

from __future__ import annotations

import numpy as np
import pytest

from model.reasons import MISSING_DOMINANCE, column_contributions, is_merely_missing

#: Profile columns of the tiny model a client may leave out (of these, a missing
#: seniority-from-title is often the persona head's strongest TreeSHAP column, but
#: seldom twice as strong as the next one).
DROPPABLE = ("title_seniority", "company", "title_function", "job_title", "lead_age_days")


@pytest.fixture(scope="module")
def champion(tiny_registry):
    from model import registry

    tiny_registry.configure()
    model, _ = registry.load_model(tiny_registry.uri(tiny_registry.champion))
    return model


def _clean(value):
    try:
        return None if value is None or value != value else value
    except (TypeError, ValueError):
        return value


def _treeshap_columns(model, head: str, row: dict) -> tuple[list[str], np.ndarray]:
    est = model.heads[head]
    Z = est.encode_records([row])
    index = est.decide(est.predict_proba_encoded(Z, num_threads=1))
    full = np.asarray(est.booster_.predict(Z, pred_contrib=True, num_threads=1))
    if len(est.classes_) == 2:
        picked = full if index[0] == 1 else -full
    else:
        picked = full.reshape(1, len(est.classes_), -1)[:, index[0]]
    return list(est.encoder_.columns_), column_contributions(est, picked)[0]


def test_a_missing_field_leads_only_when_its_treeshap_weight_dominates(
    api_client, api_headers, tiny_registry, champion
):
    features = tiny_registry.features
    present = [c for c in DROPPABLE if c in features.columns]
    assert len(present) >= 3, features.columns
    demoted = checked = 0
    for i, lead_id in enumerate(features.index[:50]):
        row = {k: _clean(v) for k, v in features.loc[lead_id].to_dict().items()}
        left_out = present[i % len(present)]
        row[left_out] = None
        body = api_client.post(
            "/v1/score",
            json={"lead_id": str(lead_id), "features": row},
            headers=api_headers["client"],
        ).json
        for head in ("stage", "persona"):
            shown = body[head]["reasons"]
            columns, contrib = _treeshap_columns(champion, head, row)
            j = columns.index(left_out) if left_out in columns else None
            # wording: a left-out value says so
            for reason in shown:
                if reason["feature"] == left_out:
                    assert reason["text"].endswith("not given"), reason
            # the weights shown are TreeSHAP's, per input column
            for reason in shown:
                expected = contrib[columns.index(reason["feature"])]
                assert reason["weight"] == pytest.approx(expected, abs=1e-4)
            if j is None or not is_merely_missing(left_out, None) or abs(contrib[j]) < 1e-9:
                continue
            checked += 1
            others = np.abs(np.delete(contrib, j))
            strongest_present = others.max() if len(others) else 0.0
            if shown and shown[0]["feature"] == left_out:
                assert abs(contrib[j]) >= MISSING_DOMINANCE * strongest_present - 1e-4
            if np.argmax(np.abs(contrib)) == j and abs(contrib[j]) < (
                MISSING_DOMINANCE * strongest_present
            ):
                # TreeSHAP's strongest column is the left-out one, but it does not dominate:
                # a present value leads
                demoted += 1
                assert shown[0]["feature"] != left_out
                assert abs(shown[0]["weight"]) == pytest.approx(strongest_present, abs=1e-4)
    assert checked >= 10
    assert demoted >= 1  # the case the rule is for did occur


def test_reasons_follow_treeshap_of_the_decided_label(
    api_client, api_headers, tiny_registry, champion
):
    features = tiny_registry.features
    for lead_id in features.index[40:60]:
        row = {k: _clean(v) for k, v in features.loc[lead_id].to_dict().items()}
        body = api_client.post(
            "/v1/score",
            json={"lead_id": str(lead_id), "features": row},
            headers=api_headers["client"],
        ).json
        for head in ("stage", "persona"):
            columns, contrib = _treeshap_columns(champion, head, row)
            shown = body[head]["reasons"]
            assert shown, body[head]
            order = np.argsort(-np.abs(contrib), kind="stable")
            top = columns[order[0]]
            value = row.get(top)
            if not is_merely_missing(top, value):
                assert shown[0]["feature"] == top
