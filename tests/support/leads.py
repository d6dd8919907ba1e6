"""Small synthetic leads with signal, and a small trained model, for the model tests.

``make_leads`` gives a feature table (pricing/demo activity → stage, job title →
persona); ``make_lead_tables`` gives raw leads and their events; ``trained()`` a
two-head ``LeadReadinessModel`` on built features (cached for the session; no
compiled trees).
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from model.classifier import HeadClassifier, TwoHeadClassifier
from model.features import FeatureConfig, build_features
from model.package import LeadReadinessModel

__all__ = [
    "AS_OF",
    "PACKAGE_TITLES",
    "REGIONS",
    "STAGES",
    "TITLES",
    "assert_records_match_frame",
    "make_lead_tables",
    "make_leads",
    "trained",
]

STAGES = ("awareness", "consideration", "decision")
TITLES = {
    "economic_buyer": ("VP of Sales", "Chief Revenue Officer", "VP Finance"),
    "technical_evaluator": ("Senior Engineer", "Engineering Manager", "Solutions Architect"),
    "non_buyer": ("Student", "Job Seeker", "Intern at University"),
}
REGIONS = ("EMEA", "US", "APAC", "LATAM", "DACH", "Nordics", "UK", "France", "Iberia", "Benelux")


def make_leads(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A feature table with signal: pricing/demo activity → stage, job title → persona."""
    rng = np.random.default_rng(seed)
    stage = rng.choice(STAGES, size=n, p=[0.5, 0.3, 0.2])
    persona = rng.choice(list(TITLES), size=n)
    level = pd.Series(stage).map({s: i for i, s in enumerate(STAGES)}).to_numpy()
    pricing = rng.poisson(0.2 + 2.0 * level)
    demo = rng.poisson(0.05 + 0.6 * (level == 2))
    title = [
        rng.choice(TITLES[p]) + (f" {rng.choice(REGIONS)}" if rng.random() < 0.6 else "")
        for p in persona
    ]
    frame = pd.DataFrame(
        {
            "lead_id": [f"lead-{i:05d}" for i in range(n)],
            "n_pricing_7d": pricing,
            "n_demo_request_30d": demo,
            "days_since_pricing": np.where(pricing > 0, rng.integers(0, 20, n), np.nan),
            "company_size": rng.integers(5, 5000, n),
            "industry": rng.choice(["Fintech", "Retail", "Health"], n),
            "job_title": title,
            "is_customer": rng.random(n) < 0.1,
            "always_one": 1,
            "noise": rng.normal(size=n),
        }
    )
    return frame, stage, persona


AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
PACKAGE_TITLES = {
    "economic_buyer": ("VP of Sales", "Chief Financial Officer", "Head of Revenue"),
    "technical_evaluator": ("Staff Engineer", "Solutions Architect", "IT Manager"),
    "non_buyer": ("Student", "Job Seeker", "Marketing Intern"),
}


def make_lead_tables(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leads (with stage and persona labels) and their events: late stages visit pricing."""
    rng = np.random.default_rng(seed)
    stages = rng.choice(["awareness", "consideration", "decision"], size=n, p=[0.45, 0.35, 0.2])
    personas = rng.choice(list(PACKAGE_TITLES), size=n)
    leads = pd.DataFrame(
        {
            "lead_id": [f"L{i:04d}" for i in range(n)],
            "job_title": [rng.choice(PACKAGE_TITLES[p]) for p in personas],
            "company_size": rng.integers(10, 3000, n),
            "industry": rng.choice(["Fintech", "Retail", "Health"], n),
            "lead_source": rng.choice(["webinar", "paid_search", "organic"], n),
            "created_at": [AS_OF - timedelta(days=int(d)) for d in rng.integers(20, 200, n)],
            "stage": stages,
            "persona": personas,
        }
    )
    events: list[dict] = []
    for lead_id, stage in zip(leads["lead_id"], stages, strict=True):
        level = {"awareness": 0, "consideration": 1, "decision": 2}[stage]
        visits = [
            ("blog", "page_view", rng.uniform(0, 80)) for _ in range(rng.poisson(2 + 2 * level))
        ]
        visits += [
            ("pricing", "page_view", rng.uniform(0, 20))
            for _ in range(rng.poisson(0.2 + 1.5 * level))
        ]
        if level == 2 and rng.random() < 0.6:
            visits.append((None, "demo_request", rng.uniform(0, 10)))
        events += [
            {
                "lead_id": lead_id,
                "timestamp": AS_OF - timedelta(days=float(age)),
                "type": kind,
                "page_category": page,
                "content_type": None,
                "content_topic": None,
                "channel": "web",
            }
            for page, kind, age in visits
        ]
    return leads, pd.DataFrame(events)


@functools.lru_cache(maxsize=1)
def trained() -> tuple[LeadReadinessModel, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A small two-head model on built features; (model, X, leads, events)."""
    leads, events = make_lead_tables()
    config = FeatureConfig()
    X = build_features(leads, events, as_of=AS_OF, config=config, exclude=("stage", "persona"))
    clf = TwoHeadClassifier(
        stage_estimator=HeadClassifier(n_estimators=40, num_threads=1),
        persona_estimator=HeadClassifier(n_estimators=40, num_threads=1),
    ).fit(X, leads["stage"].to_numpy(), leads["persona"].to_numpy())
    model = LeadReadinessModel(
        clf,
        input_columns=list(X.columns),
        feature_config=config,
        metadata={"metrics": {"stage_macro_f1": 0.5}},
    )
    return model, X, leads, events


def assert_records_match_frame(frame: pd.DataFrame, records: list[dict], reasons: bool):
    assert len(frame) == len(records)
    for i, rec in enumerate(records):
        row = frame.iloc[i]
        for head in ("stage", "persona"):
            if head not in frame.columns:
                assert rec[head] is None
                continue
            assert rec[head]["label"] == row[head]
            assert abs(rec[head]["confidence"] - row[f"{head}_confidence"]) <= 1e-9
            for label, p in rec[head]["probabilities"].items():
                assert abs(p - row[f"{head}_proba__{label}"]) <= 1e-9
            if reasons:
                assert rec[head]["reasons"] == json.loads(row[f"{head}_reasons"])
            else:
                assert "reasons" not in rec[head]
        if rec["readiness"] is None:
            assert np.isnan(row["readiness"])
        else:
            assert abs(rec["readiness"] - row["readiness"]) <= 1e-9
        assert rec["route"] == row["route"]
