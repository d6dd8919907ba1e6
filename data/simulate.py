"""Simulate B2B buyer journeys: leads, their engagement events and the hidden truth, with
marketing's labels corrupted at a known rate; vectorized and deterministic for a seed
(what is drawn and how: docs/design/data.md).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data.schema import DEFAULT_PERSONAS, DEFAULT_STAGES, EVENT_COLUMNS, EVENT_TYPES, LEAD_COLUMNS
from data.values import as_utc

__all__ = [
    "LEAD_SOURCES",
    "SIMULATED_LEAD_COLUMNS",
    "TRUTH_COLUMNS",
    "Simulation",
    "SimulationConfig",
    "simulate",
    "write",
]

#: Where leads come from.
LEAD_SOURCES: tuple[str, ...] = (
    "webinar",
    "organic_search",
    "paid_social",
    "content_syndication",
    "referral",
    "event",
    "direct",
)
#: Columns of the simulated leads table: the profile plus marketing's labels.
SIMULATED_LEAD_COLUMNS: tuple[str, ...] = (*LEAD_COLUMNS, "stage", "persona")
#: Columns of the truth table.
TRUTH_COLUMNS: tuple[str, ...] = ("lead_id", "true_stage", "true_persona")

_DAY = 86_400


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Frozen: pass a new one (``dataclasses.replace``) to change it.

    The same config gives the same tables, byte for byte. Shares are of all leads unless
    said otherwise; ``end`` closes the window (no event or lead is later; naive means
    UTC) of ``window_days``.
    """

    n_leads: int = 10_000
    seed: int = 0
    window_days: int = 180
    #: Share of marketing labels (each of stage and persona) that differ from the truth.
    label_noise: float = 0.20
    end: datetime = datetime(2026, 6, 30, tzinfo=UTC)
    #: Leads truly in a late stage (decision or purchase).
    late_stage_share: float = 0.15
    #: Non-buyers (students, job seekers, vendors).
    non_buyer_share: float = 0.20
    #: Part of the label noise that follows marketing's systematic mistakes.
    systematic_noise_share: float = 0.5
    #: Leads that come from a webinar registration.
    webinar_lead_share: float = 0.15
    #: Leads whose mail scanner clicks every link within seconds.
    bot_share: float = 0.01
    #: Leads without a job title.
    missing_title_share: float = 0.05
    #: Leads with several profile fields missing.
    partial_profile_share: float = 0.08
    #: Multiplies every event rate (1.0 gives roughly 20 events per lead).
    activity: float = 1.0

    def __post_init__(self) -> None:
        for name, least in (("n_leads", 1), ("window_days", 1), ("activity", 0)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be at least {least}, got {getattr(self, name)}")
        for name in (f.name for f in fields(self)):
            value = getattr(self, name)
            if (name == "label_noise" or name.endswith("_share")) and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.late_stage_share == 1.0 and self.non_buyer_share > 0:
            raise ValueError("non-buyers are never late-stage: late_stage_share must be below 1")
        if not isinstance(self.end, datetime):
            raise ValueError(f"end must be a datetime, got {self.end!r}")
        object.__setattr__(self, "end", as_utc(self.end))

    @property
    def start(self) -> datetime:
        """Start of the window."""
        return (pd.Timestamp(self.end) - pd.Timedelta(days=self.window_days)).to_pydatetime()


@dataclass
class Simulation:
    """Simulated tables and the config that produced them."""

    #: One row a lead: ``SIMULATED_LEAD_COLUMNS`` (profile, marketing's stage and persona).
    leads: pd.DataFrame
    #: One row an event: ``data.schema.EVENT_COLUMNS``, sorted by time.
    events: pd.DataFrame
    #: ``lead_id, true_stage, true_persona``, in the order of ``leads``.
    truth: pd.DataFrame
    config: SimulationConfig = field(default_factory=SimulationConfig)

    def noise_rates(self) -> dict[str, float]:
        """Measured share of marketing labels that differ from the truth, per label."""
        return {
            "stage": float((self.leads["stage"] != self.truth["true_stage"]).mean()),
            "persona": float((self.leads["persona"] != self.truth["true_persona"]).mean()),
        }

    def class_balance(self) -> dict[str, dict[str, float]]:
        """Share of each true stage and each true persona."""
        return {
            "stage": _shares(self.truth["true_stage"], DEFAULT_STAGES),
            "persona": _shares(self.truth["true_persona"], DEFAULT_PERSONAS),
        }


def _shares(values: pd.Series, order: tuple[str, ...]) -> dict[str, float]:
    counts = values.value_counts(normalize=True)
    return {k: float(counts.get(k, 0.0)) for k in order}


# --------------------------------------------------------------------------- groups

# Persona groups: the three buyer personas and three kinds of non-buyer.
_EB, _TE, _PR, _STUDENT, _SEEKER, _VENDOR = range(6)
_GROUP_PERSONA = np.array([0, 1, 2, 3, 3, 3])  # index into DEFAULT_PERSONAS
_NON_BUYER_SPLIT = np.array([0.45, 0.30, 0.25])  # students, job seekers, vendors
_BUYER_MIX_EARLY = np.array([0.28, 0.32, 0.40])
_BUYER_MIX_LATE = np.array([0.40, 0.35, 0.25])
_AW, _CO, _DE, _PU = range(4)

# (title, seniority, department, weight); seniority/department follow model/titles.py labels.
_Title = tuple[str, str | None, str | None, float]
_TITLES: dict[int, tuple[_Title, ...]] = {
    _EB: (
        ("CFO", "c_level", "finance", 1.0),
        ("VP of Finance", "vp", "finance", 1.5),
        ("Head of Procurement", "head", "procurement", 1.2),
        ("Finance Director", "director", "finance", 1.2),
        ("Director of Operations", "director", "operations", 1.0),
        ("COO", "c_level", "executive", 0.5),
        ("CEO", "c_level", "executive", 0.6),
        ("VP of Sales", "vp", "sales", 0.8),
        ("Chief Revenue Officer", "c_level", "sales", 0.4),
        ("VP of Marketing", "vp", "marketing", 0.8),
        ("Procurement Manager", "manager", "procurement", 0.8),
    ),
    _TE: (
        ("Staff Engineer", "senior_ic", "engineering", 1.0),
        ("Solutions Architect", "senior_ic", "engineering", 1.2),
        ("Head of IT", "head", "it", 1.0),
        ("CTO", "c_level", "engineering", 0.5),
        ("IT Director", "director", "it", 0.8),
        ("Engineering Manager", "manager", "engineering", 1.0),
        ("Principal Engineer", "senior_ic", "engineering", 0.7),
        ("Enterprise Architect", "senior_ic", "it", 0.7),
        ("Data Engineering Lead", "manager", "data", 0.8),
        ("Security Architect", "senior_ic", "it", 0.5),
        ("VP of Engineering", "vp", "engineering", 0.4),
    ),
    _PR: (
        ("Data Analyst", "ic", "data", 1.3),
        ("Marketing Specialist", "ic", "marketing", 1.2),
        ("Operations Analyst", "ic", "operations", 1.0),
        ("Software Engineer", "ic", "engineering", 1.0),
        ("Business Analyst", "ic", "operations", 1.0),
        ("Sales Operations Specialist", "ic", "sales", 0.7),
        ("Marketing Manager", "manager", "marketing", 0.8),
        ("Financial Analyst", "ic", "finance", 0.7),
        ("Data Scientist", "ic", "data", 0.8),
        ("Senior Data Analyst", "senior_ic", "data", 0.5),
        ("HR Generalist", "ic", "hr", 0.4),
    ),
    _STUDENT: (
        ("Student", "student", "education", 2.0),
        ("PhD Candidate", "student", "education", 1.0),
        ("MBA Student", "student", "education", 0.8),
        ("Computer Science Student", "student", "education", 0.8),
        ("Graduate Research Assistant", "student", "education", 0.5),
        ("Intern", "student", None, 0.6),
    ),
    _SEEKER: (
        ("Looking for opportunities", None, None, 2.0),
        ("Open to work", None, None, 1.5),
        ("Seeking new role", None, None, 1.0),
        ("Recent Graduate", None, None, 0.8),
        ("Career changer", None, None, 0.5),
    ),
    _VENDOR: (
        ("Account Executive", "ic", "sales", 2.0),
        ("Sales Development Representative", "ic", "sales", 1.5),
        ("Partnerships Manager", "manager", "sales", 0.8),
        ("Business Development Manager", "manager", "sales", 0.8),
        ("Agency Founder", "c_level", "executive", 0.4),
    ),
}
#: Titles marketing reads as "the boss" although their holder evaluates technology.
_SENIOR_TECH = ("c_level", "vp", "director", "head")

#: Industries and how often a company is in each.
_INDUSTRY_SHARES = {
    "software": 18,
    "financial_services": 14,
    "healthcare": 11,
    "manufacturing": 12,
    "retail": 9,
    "logistics": 7,
    "telecom": 6,
    "public_sector": 6,
    "media": 5,
    "energy": 6,
    "education": 6,
}
_INDUSTRIES = tuple(_INDUSTRY_SHARES)
_INDUSTRY_WEIGHTS = np.array(list(_INDUSTRY_SHARES.values()), dtype=float)
_COUNTRIES = ("US", "GB", "DE", "FR", "CA", "NL", "AU", "IN", "SE", "ES", "BR", "JP", "SG", "IE")
_COUNTRY_WEIGHTS = np.array([34, 11, 9, 6, 6, 4, 4, 8, 3, 3, 4, 3, 2, 3], dtype=float)
_COMPANY_PREFIX = (
    "Acme", "Globex", "Initech", "Umbrella", "Vandelay", "Hooli", "Stark", "Wayne",
    "Soylent", "Cyberdyne", "Tyrell", "Northwind", "Contoso", "Fabrikam", "Litware",
    "Adatum", "Proseware", "Wingtip", "Tailspin", "Blue Yonder", "Oceanic", "Massive",
    "Pied Piper", "Dunder", "Gringotts", "Monarch", "Sterling", "Aperture", "Black Mesa",
    "Nakatomi", "Ollivander", "Prestige", "Quantum", "Redwood", "Summit", "Trident",
    "Vertex", "Zenith", "Harbor", "Ironclad", "Juniper", "Keystone", "Lumen", "Meridian",
    "Nimbus", "Orion", "Pinnacle", "Riverbend", "Silverline", "Evergreen",
)  # fmt: skip
_COMPANY_QUALIFIER = (
    "", "Global ", "United ", "North ", "Pacific ", "Atlantic ", "Digital ", "First ",
    "Advanced ", "Applied ", "Integrated ", "National ",
)  # fmt: skip
_COMPANY_SUFFIX = (
    "Corp", "Inc", "Group", "Labs", "Systems", "Holdings", "Analytics", "Logistics",
    "Health", "Bank", "Industries", "Retail", "Networks", "Energy", "Media", "Partners",
)  # fmt: skip
_UNIVERSITIES = (
    "State University", "Institute of Technology", "Business School", "University College",
    "Polytechnic University", "Technical University",
)  # fmt: skip
_VENDORS = (
    "Salesforge", "Leadly", "PipeStack", "OutreachOps", "GrowthCo Agency",
    "DataBridge Partners", "Funnelwise", "Prospectr", "AdPilot Media", "CloudResell",
)  # fmt: skip

# Lead source weights (without webinar: webinar leads are drawn on their own) per group.
_SOURCE_WEIGHTS = np.array(
    [
        # webinar, organic, paid_social, syndication, referral, event, direct
        [0, 0.24, 0.12, 0.14, 0.18, 0.14, 0.18],  # economic buyer
        [0, 0.34, 0.10, 0.14, 0.14, 0.10, 0.18],  # technical evaluator
        [0, 0.32, 0.18, 0.18, 0.10, 0.08, 0.14],  # practitioner
        [0, 0.46, 0.22, 0.22, 0.02, 0.04, 0.04],  # student
        [0, 0.55, 0.20, 0.10, 0.03, 0.04, 0.08],  # job seeker
        [0, 0.35, 0.10, 0.10, 0.05, 0.25, 0.15],  # vendor
    ]
)
# Late-stage leads come through referrals and direct contact more often.
_SOURCE_STAGE_TILT = np.array(
    [
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1.3, 1.2, 1.2],
        [1, 0.8, 0.7, 0.6, 2.0, 1.3, 1.8],
        [1, 0.7, 0.6, 0.5, 2.4, 1.3, 2.2],
    ]
)

# --------------------------------------------------------------------------- event kinds

_WEB_CHANNELS = ("organic_search", "direct", "email", "paid_social", "referral")
_WEB_CHANNEL_WEIGHTS = np.array([0.35, 0.30, 0.15, 0.12, 0.08])


@dataclass(frozen=True)
class _Kind:
    """One kind of engagement: its event type, properties and rate by true stage."""

    name: str
    type: str
    page_category: str | None
    content_type: str | None
    channel: str  # "web" draws a traffic source; others are used as they are
    topical: bool
    rates: tuple[float, float, float, float]  # mean count over the window per stage
    signal: bool = False  # a buying signal: recent for late-stage leads
    cap: int | None = None  # at most this many per lead


_KINDS: tuple[_Kind, ...] = (
    _Kind("email_open", "email_open", None, None, "email", True, (5.0, 5.0, 4.0, 3.0)),
    _Kind("email_click", "email_click", None, None, "email", True, (1.2, 1.8, 1.8, 1.2)),
    _Kind("home", "page_view", "home", None, "web", False, (1.0, 1.0, 0.8, 0.6)),
    _Kind("blog", "page_view", "blog", "blog_post", "web", True, (3.0, 2.0, 0.8, 0.4)),
    _Kind("ebook", "content_download", None, "ebook", "web", True, (0.8, 0.6, 0.2, 0.1)),
    _Kind("whitepaper", "content_download", None, "whitepaper", "web", True, (0.3, 0.5, 0.3, 0.1)),
    _Kind("product", "page_view", "product", None, "web", False, (0.4, 1.5, 2.0, 1.5)),
    _Kind(
        "webinar_register", "webinar_register", None, "webinar", "webinar", True,
        (0.15, 0.6, 0.3, 0.1),
    ),
    _Kind(
        "webinar_attend", "webinar_attend", None, "webinar", "webinar", True,
        (0.08, 0.5, 0.25, 0.08),
    ),
    _Kind(
        "case_study_view", "page_view", "case_study", "case_study", "web", True,
        (0.1, 0.9, 1.0, 0.5),
    ),
    _Kind(
        "case_study_download", "content_download", None, "case_study", "web", True,
        (0.05, 0.4, 0.4, 0.2),
    ),
    _Kind(
        "comparison_view", "page_view", "comparison", "comparison_guide", "web", False,
        (0.05, 0.7, 1.0, 0.3),
    ),
    _Kind(
        "comparison_download", "content_download", None, "comparison_guide", "web", False,
        (0.02, 0.5, 0.6, 0.2),
    ),
    _Kind("pricing", "page_view", "pricing", None, "web", False, (0.05, 0.4, 2.0, 2.5), True),
    _Kind("demo", "demo_request", None, None, "form", False, (0.003, 0.04, 0.6, 0.5), True, 2),
    _Kind("trial", "trial_start", None, None, "product", False, (0.002, 0.03, 0.35, 0.7), True, 1),
    _Kind("meeting", "meeting_booked", None, None, "sales", False, (0.001, 0.02, 0.5, 1.0), True, 3),
    _Kind("docs", "page_view", "docs", "docs", "web", True, (0.1, 0.4, 1.0, 1.5)),
    _Kind("integrations", "page_view", "integrations", None, "web", False, (0.05, 0.3, 0.6, 0.6)),
    _Kind("roi", "page_view", "roi", "roi_calculator", "web", False, (0.02, 0.15, 0.5, 0.4)),
    _Kind(
        "analyst_report", "content_download", None, "analyst_report", "web", True,
        (0.05, 0.2, 0.3, 0.1),
    ),
    _Kind("datasheet", "content_download", None, "datasheet", "web", False, (0.05, 0.3, 0.4, 0.2)),
    _Kind("careers", "page_view", "careers", None, "web", False, (0.1, 0.05, 0.05, 0.05)),
    _Kind("about", "page_view", "about", None, "web", False, (0.2, 0.3, 0.3, 0.3)),
    _Kind("contact_form", "form_submit", None, None, "form", False, (0.15, 0.3, 0.4, 0.3)),
)  # fmt: skip
_KIND_INDEX = {k.name: i for i, k in enumerate(_KINDS)}

# Multipliers of the kind rates per persona group (1.0 where not listed).
_GROUP_MULTIPLIERS: dict[int, dict[str, float]] = {
    _EB: {
        "roi": 3.0, "analyst_report": 3.0, "case_study_view": 1.5, "case_study_download": 1.5,
        "pricing": 1.5, "comparison_view": 1.3, "meeting": 1.3, "docs": 0.2,
        "integrations": 0.3, "blog": 0.6, "trial": 0.4, "datasheet": 0.6, "careers": 0.3,
    },
    _TE: {
        "docs": 4.0, "integrations": 3.0, "trial": 2.0, "datasheet": 2.0, "whitepaper": 1.5,
        "blog": 1.2, "roi": 0.3, "analyst_report": 0.5, "careers": 0.3,
    },
    _PR: {
        "blog": 1.5, "ebook": 1.6, "webinar_register": 1.4, "webinar_attend": 1.4, "docs": 1.5,
        "pricing": 0.6, "demo": 0.5, "meeting": 0.4, "roi": 0.3, "analyst_report": 0.5,
    },
    _STUDENT: {
        "blog": 2.5, "ebook": 3.0, "whitepaper": 2.5, "analyst_report": 1.5, "careers": 4.0,
        "webinar_register": 1.5, "webinar_attend": 1.5, "docs": 1.2, "email_open": 0.6,
        "pricing": 0.1, "demo": 0.02, "trial": 0.3, "meeting": 0.01, "roi": 0.1,
        "contact_form": 0.3,
    },
    _SEEKER: {
        "careers": 20.0, "about": 3.0, "home": 2.0, "blog": 1.2, "ebook": 0.8,
        "email_open": 0.5, "pricing": 0.05, "demo": 0.01, "trial": 0.05, "meeting": 0.01,
        "contact_form": 0.5, "comparison_view": 0.2, "comparison_download": 0.2,
    },
    _VENDOR: {
        "about": 3.0, "contact_form": 3.0, "pricing": 0.8, "comparison_view": 1.5,
        "product": 1.5, "integrations": 1.2, "careers": 0.5, "demo": 0.1, "trial": 0.3,
        "meeting": 0.05,
    },
}  # fmt: skip

# Recency: an event falls at created + u * (end - created), u ~ Beta(a, b) per stage.
_RECENCY = np.array([[1.0, 1.4], [1.4, 1.0], [2.5, 1.0], [3.5, 1.0]])
_SIGNAL_RECENCY = np.array([[1.0, 1.4], [1.6, 1.0], [6.0, 1.0], [8.0, 1.0]])
# created_at: start + window * Beta(a, b) per stage (late stages are older leads).
_CREATED = np.array([[1.3, 1.0], [1.0, 1.0], [1.0, 1.4], [1.0, 1.8]])
# How much more often a lead of each stage comes from a webinar.
_WEBINAR_TILT = np.array([1.1, 1.2, 0.5, 0.3])

_TOPICS_BY_GROUP: dict[int, tuple[str, ...]] = {
    _EB: ("cost_savings", "roi", "compliance", "vendor_consolidation", "industry_trends"),
    _TE: ("security", "integrations", "api", "architecture", "data_pipelines"),
    _PR: ("how_to", "analytics", "automation", "best_practices", "templates"),
    _STUDENT: ("industry_trends", "how_to", "research", "careers"),
    _SEEKER: ("careers", "industry_trends", "how_to"),
    _VENDOR: ("industry_trends", "partnerships", "best_practices"),
}
_ALL_TOPICS: tuple[str, ...] = tuple(sorted({t for ts in _TOPICS_BY_GROUP.values() for t in ts}))
_OWN_TOPIC_SHARE = 0.65
#: Scales the kind rates so that ``activity=1.0`` gives about 20 events per lead.
_BASE_ACTIVITY = 1.6


# --------------------------------------------------------------------------- helpers


def _text(values: tuple[str | None, ...] | np.ndarray, codes: np.ndarray) -> pd.Series:
    """``values[codes]`` as a pandas text column (missing where the value is None)."""
    table = pa.array(list(values), type=pa.large_string())
    taken = table.take(pa.array(np.asarray(codes, dtype=np.int64)))
    return pd.Series(taken, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


def _draw(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (rows sum to 1), vectorized."""
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    u = rng.random(len(probs))
    return (u[:, None] >= cum).sum(axis=1)


def _pick(rng: np.random.Generator, mask: np.ndarray, k: int) -> np.ndarray:
    """``k`` positions chosen at random among ``mask`` (all if fewer), ascending."""
    where = np.flatnonzero(mask)
    if k >= len(where):
        return where
    return np.sort(rng.choice(where, size=k, replace=False))


def _seconds(dt: datetime) -> int:
    return int(pd.Timestamp(dt).timestamp())


def _timestamps(seconds: np.ndarray) -> pd.Series:
    """Epoch seconds as ``datetime64[us, UTC]``."""
    utc = seconds.astype(np.int64).astype("datetime64[s]").astype("datetime64[us]")
    return pd.Series(utc).dt.tz_localize("UTC")


# --------------------------------------------------------------------------- truth and profiles


@dataclass
class _Leads:
    """Per-lead arrays (index = internal lead number)."""

    stage: np.ndarray
    group: np.ndarray
    created: np.ndarray  # epoch seconds
    webinar_lead: np.ndarray
    webinar_of_lead: np.ndarray  # index into webinar dates, -1 if none
    title_code: np.ndarray  # index into the group's title pool
    profile: pd.DataFrame


def _webinar_dates(config: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    start, end = _seconds(config.start), _seconds(config.end)
    n = max(1, config.window_days // 21)
    span = end - start
    base = start + np.linspace(0.08, 0.95, n) * span if n > 1 else np.array([start + 0.5 * span])
    jitter = rng.integers(-3, 4, size=n) * _DAY if span > 10 * _DAY else np.zeros(n, dtype=int)
    days = (base + jitter) // _DAY * _DAY + 16 * 3600  # 16:00 UTC
    return np.clip(days, start + 3600, end - 3 * 3600).astype(np.int64)


def _draw_truth(
    config: SimulationConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n = config.n_leads
    late = config.late_stage_share
    stage_p = np.array([(1 - late) * 0.6, (1 - late) * 0.4, late * 2 / 3, late / 3])
    stage = _draw(rng, np.broadcast_to(stage_p, (n, 4)).copy())
    nb_early = min(config.non_buyer_share / (1 - late), 1.0) if late < 1 else 0.0
    early = np.concatenate([(1 - nb_early) * _BUYER_MIX_EARLY, nb_early * _NON_BUYER_SPLIT])
    late_row = np.concatenate([_BUYER_MIX_LATE, np.zeros(3)])
    group_p = np.where((stage >= _DE)[:, None], late_row, early)
    return stage, _draw(rng, group_p)


def _draw_leads(config: SimulationConfig, rng: np.random.Generator, webinars: np.ndarray) -> _Leads:
    """Every lead's hidden truth and profile, drawn column by column. One function on
    purpose: the order of the draws from ``rng`` is part of the output (a seed gives
    byte-identical files), and here it reads top to bottom."""
    n = config.n_leads
    stage, group = _draw_truth(config, rng)
    start, end = _seconds(config.start), _seconds(config.end)
    span = end - start

    # Webinar leads: registered shortly before one of the webinars.
    tilt = _WEBINAR_TILT[stage]
    expected = float(np.mean(_WEBINAR_TILT[stage])) if n else 1.0
    webinar_lead = rng.random(n) < np.clip(config.webinar_lead_share * tilt / expected, 0, 1)
    webinar_of_lead = np.where(webinar_lead, rng.integers(0, len(webinars), n), -1)
    before = np.minimum(rng.exponential(2.0 * _DAY, n), 10 * _DAY).astype(np.int64)
    webinar_created = webinars[np.maximum(webinar_of_lead, 0)] - before

    a, b = _CREATED[stage].T
    other_created = start + (rng.beta(a, b) * (span - 3600)).astype(np.int64)
    created = np.where(webinar_lead, webinar_created, other_created)
    created = np.clip(created, start, end - 3600)

    # Lead source.
    weights = _SOURCE_WEIGHTS[group] * _SOURCE_STAGE_TILT[stage]
    source = _draw(rng, weights / weights.sum(axis=1, keepdims=True))
    source[webinar_lead] = 0

    # Title, seniority, department per group.
    titles = np.empty(n, dtype=object)
    seniority = np.empty(n, dtype=object)
    department = np.empty(n, dtype=object)
    title_code = np.zeros(n, dtype=np.int64)
    for g, pool in _TITLES.items():
        idx = np.flatnonzero(group == g)
        table = np.array(pool, dtype=object)
        code = _draw_index(rng, table[:, 3].astype(float), len(idx))
        title_code[idx] = code
        titles[idx], seniority[idx], department[idx] = table[code, :3].T

    # Companies: a heavy-tailed number of leads per company; size, industry, country per company.
    n_companies = max(20, n // 3)
    company_id = np.minimum((n_companies * rng.random(n) ** 1.8).astype(np.int64), n_companies - 1)
    c_size = np.clip(np.round(rng.lognormal(np.log(300), 1.7, n_companies)), 2, 2_000_000)
    c_industry = _draw_index(rng, _INDUSTRY_WEIGHTS, n_companies)
    c_country = _draw_index(rng, _COUNTRY_WEIGHTS, n_companies)
    # A company's name is its number's digits in prefix, suffix and qualifier, then a round.
    rest, pre = np.divmod(company_id, len(_COMPANY_PREFIX))
    rest, suf = np.divmod(rest, len(_COMPANY_SUFFIX))
    round_, qual = np.divmod(rest, len(_COMPANY_QUALIFIER))
    named = _text(_COMPANY_QUALIFIER, qual) + _text(_COMPANY_PREFIX, pre)
    company = named.str.cat(_text(_COMPANY_SUFFIX, suf), sep=" ")
    numbered = round_ > 0
    company[numbered] = (
        company[numbered] + " " + pd.Series(round_[numbered] + 1).astype("str").to_numpy()
    )
    size = pd.array(c_size[company_id].astype(np.int64), dtype="Int64")
    industry = np.array(_INDUSTRIES, dtype=object)[c_industry[company_id]]
    country = np.array(_COUNTRIES, dtype=object)[c_country[company_id]]

    # Non-buyers: students at universities or nowhere, job seekers nowhere, vendors small.
    student = group == _STUDENT
    at_uni = student & (rng.random(n) < 0.4)
    uni = (
        _text(_COMPANY_PREFIX, rng.integers(0, len(_COMPANY_PREFIX), n))
        + " "
        + _text(_UNIVERSITIES, rng.integers(0, len(_UNIVERSITIES), n))
    )
    company[at_uni] = uni[at_uni]
    vendor = group == _VENDOR
    vendor_name = _text(_VENDORS, rng.integers(0, len(_VENDORS), n))
    company[vendor] = vendor_name[vendor]
    with_vendor = vendor & (rng.random(n) < 0.6)
    titles[with_vendor] = titles[with_vendor] + " at " + vendor_name[with_vendor].to_numpy()
    nowhere = (student & ~at_uni) | (group == _SEEKER)
    company[nowhere] = np.nan
    size[nowhere | at_uni] = pd.NA
    size[vendor] = rng.integers(5, 300, n)[vendor]
    industry[nowhere] = None
    industry[at_uni] = "education"
    industry[vendor] = np.where(rng.random(n) < 0.5, "software", "media")[vendor]
    own_country = np.array(_COUNTRIES, dtype=object)[_draw_index(rng, _COUNTRY_WEIGHTS, n)]
    country[nowhere] = own_country[nowhere]

    profile = pd.DataFrame(
        {
            "job_title": pd.Series(titles, dtype="str"),
            "seniority": pd.Series(seniority, dtype="str"),
            "department": pd.Series(department, dtype="str"),
            "company": company.astype("str"),
            "company_size": size,
            "industry": pd.Series(industry, dtype="str"),
            "country": pd.Series(country, dtype="str"),
            "lead_source": _text(LEAD_SOURCES, source),
        }
    )
    _profile_noise(config, rng, profile)
    return _Leads(stage, group, created, webinar_lead, webinar_of_lead, title_code, profile)


def _profile_noise(
    config: SimulationConfig, rng: np.random.Generator, profile: pd.DataFrame
) -> None:
    """Casing variants, missing titles, CRM gaps and partial profiles, in place."""
    n = len(profile)
    title = profile["job_title"]
    u = rng.random(n)
    title = title.mask(u < 0.04, title.str.lower()).mask(
        (u >= 0.04) & (u < 0.06), title.str.upper()
    )
    title = title.mask(rng.random(n) < config.missing_title_share)
    profile["job_title"] = title
    profile["seniority"] = profile["seniority"].mask(rng.random(n) < 0.15)
    profile["department"] = profile["department"].mask(rng.random(n) < 0.10)
    partial = rng.random(n) < config.partial_profile_share
    for column in ("seniority", "department", "company_size", "industry", "country"):
        blank = partial & (rng.random(n) < 0.6)
        profile.loc[blank, column] = pd.NA if column == "company_size" else np.nan


# --------------------------------------------------------------------------- events


@dataclass
class _Events:
    lead: np.ndarray
    kind: np.ndarray  # index into _KINDS
    time: np.ndarray  # epoch seconds
    on_demand: np.ndarray  # webinar watched as a recording


def _kind_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rates = np.array([k.rates for k in _KINDS]).T  # (stage, kind)
    mult = np.ones((6, len(_KINDS)))
    for g, table in _GROUP_MULTIPLIERS.items():
        for name, m in table.items():
            mult[g, _KIND_INDEX[name]] = m
    signal = np.array([k.signal for k in _KINDS])
    caps = np.array([k.cap if k.cap is not None else np.iinfo(np.int64).max for k in _KINDS])
    return rates, mult, signal, caps


def _draw_events(
    config: SimulationConfig, rng: np.random.Generator, leads: _Leads, webinars: np.ndarray
) -> _Events:
    """Every lead's events, drawn per kind of event. One function on purpose: the order
    of the draws from ``rng`` is part of the output, and here it reads top to bottom."""
    n = config.n_leads
    end = _seconds(config.end)
    rates, mult, signal, caps = _kind_tables()
    age = (end - leads.created) / (config.window_days * _DAY)
    activity = (
        _BASE_ACTIVITY
        * rng.gamma(1.5, 1 / 1.5, n)
        * (0.25 + 0.75 * np.clip(age, 0, 1))
        * config.activity
    )
    lam = rates[leads.stage] * mult[leads.group] * activity[:, None]
    counts = np.minimum(rng.poisson(lam), caps)
    flat = counts.ravel()
    nz = np.flatnonzero(flat)
    reps = flat[nz]
    lead = np.repeat(nz // len(_KINDS), reps)
    kind = np.repeat(nz % len(_KINDS), reps)

    # When: late-stage buying signals are recent.
    params = np.where(
        signal[kind][:, None], _SIGNAL_RECENCY[leads.stage[lead]], _RECENCY[leads.stage[lead]]
    )
    u = rng.beta(params[:, 0], params[:, 1])
    created = leads.created[lead]
    time = created + (u * (end - created)).astype(np.int64)

    # Webinars happen on webinar dates; registrations in the days before.
    on_demand = np.zeros(len(kind), dtype=bool)
    for name, offset in (("webinar_attend", None), ("webinar_register", 5 * _DAY)):
        sel = np.flatnonzero(kind == _KIND_INDEX[name])
        nxt = np.searchsorted(webinars, time[sel])
        ok = nxt < len(webinars)
        date = webinars[np.minimum(nxt, len(webinars) - 1)]
        if offset is None:
            snapped = date + rng.integers(0, 3600, len(sel))
            on_demand[sel[~ok]] = True
        else:
            snapped = np.maximum(date - rng.integers(0, offset, len(sel)), created[sel])
        time[sel] = np.where(ok, snapped, time[sel])

    # Webinar leads registered when they were created; most attended.
    wl = np.flatnonzero(leads.webinar_lead)
    attended = wl[rng.random(len(wl)) < 0.65]
    extra_lead = [wl, attended]
    extra_kind = [
        np.full(len(wl), _KIND_INDEX["webinar_register"]),
        np.full(len(attended), _KIND_INDEX["webinar_attend"]),
    ]
    extra_time = [
        leads.created[wl],
        webinars[leads.webinar_of_lead[attended]] + rng.integers(0, 3600, len(attended)),
    ]

    # Bots: a mail scanner clicks every link (and opens the mail) within seconds.
    n_bots = int(round(config.bot_share * n))
    if n_bots:
        bots = np.sort(rng.choice(n, size=n_bots, replace=False))
        clicks = rng.integers(40, 250, n_bots)
        per = clicks + clicks // 4
        t0 = leads.created[bots] + (rng.random(n_bots) * (end - 60 - leads.created[bots])).astype(
            np.int64
        )
        bot_lead = np.repeat(bots, per)
        within = rng.integers(0, 20, per.sum())
        first = np.repeat(np.cumsum(per) - per, per)
        is_click = (np.arange(per.sum()) - first) < np.repeat(clicks, per)
        extra_lead.append(bot_lead)
        extra_kind.append(np.where(is_click, _KIND_INDEX["email_click"], _KIND_INDEX["email_open"]))
        extra_time.append(np.repeat(t0, per) + within)

    lead = np.concatenate([lead, *extra_lead])
    kind = np.concatenate([kind, *extra_kind])
    time = np.minimum(np.concatenate([time, *extra_time]), end)
    on_demand = np.concatenate([on_demand, np.zeros(len(lead) - len(on_demand), dtype=bool)])
    order = np.lexsort((kind, lead, time))
    return _Events(lead[order], kind[order], time[order], on_demand[order])


def _events_frame(
    rng: np.random.Generator, ev: _Events, leads: _Leads, lead_ids: np.ndarray
) -> pd.DataFrame:
    m = len(ev.kind)
    group = leads.group[ev.lead]
    type_code = np.array([EVENT_TYPES.index(k.type) for k in _KINDS])[ev.kind]
    pages, page_code = _kind_codes("page_category")
    contents, content_code = _kind_codes("content_type")

    # Topics: mostly the persona's own interests, sometimes anything.
    width = max(len(t) for t in _TOPICS_BY_GROUP.values())
    own = np.full((6, width), -1)
    own_len = np.zeros(6, dtype=np.int64)
    for g, topics in _TOPICS_BY_GROUP.items():
        own[g, : len(topics)] = [_ALL_TOPICS.index(t) for t in topics]
        own_len[g] = len(topics)
    pick_own = rng.random(m) < _OWN_TOPIC_SHARE
    own_topic = own[group, (rng.random(m) * own_len[group]).astype(np.int64)]
    any_topic = rng.integers(0, len(_ALL_TOPICS), m)
    topical = np.array([k.topical for k in _KINDS])[ev.kind]
    topic = np.where(topical, np.where(pick_own, own_topic, any_topic), len(_ALL_TOPICS))

    # Channels: email, a traffic source for web pages, webinar or its recording, ...
    fixed = tuple(sorted({k.channel for k in _KINDS if k.channel != "web"} | {"on_demand"}))
    channels = (*_WEB_CHANNELS, *fixed)
    kind_channel = np.array(
        [channels.index(k.channel) if k.channel != "web" else -1 for k in _KINDS]
    )[ev.kind]
    web = _draw_index(rng, _WEB_CHANNEL_WEIGHTS, m)
    channel = np.where(kind_channel >= 0, kind_channel, web)
    channel[ev.on_demand] = channels.index("on_demand")

    frame = pd.DataFrame(
        {
            "lead_id": _text(tuple(lead_ids), ev.lead),
            "timestamp": _timestamps(ev.time),
            "type": _text(EVENT_TYPES, type_code),
            "page_category": _text((*pages, None), page_code[ev.kind]),
            "content_type": _text((*contents, None), content_code[ev.kind]),
            "content_topic": _text((*_ALL_TOPICS, None), topic),
            "channel": _text(channels, channel),
        }
    )
    return frame[list(EVENT_COLUMNS)]


def _kind_codes(attribute: str) -> tuple[tuple[str, ...], np.ndarray]:
    """The sorted values of a ``_Kind`` attribute, and each kind's index into them
    (one past the end where the kind has none)."""
    values = tuple(sorted({getattr(k, attribute) for k in _KINDS} - {None}))
    own = [getattr(k, attribute) for k in _KINDS]
    return values, np.array([values.index(v) if v else len(values) for v in own])


def _draw_index(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    return rng.choice(len(weights), size=size, p=weights / weights.sum())


# --------------------------------------------------------------------------- labels


def _corrupt(
    rng: np.random.Generator,
    truth: np.ndarray,
    n_classes: int,
    rules: list[tuple[np.ndarray, np.ndarray, float]],
    noise: float,
    systematic_share: float,
) -> np.ndarray:
    """Marketing's labels: exactly ``round(noise * n)`` differ from the truth.

    ``rules`` are (candidates mask, wrong label per lead, probability): the
    systematic mistakes, taking up to ``systematic_share`` of the noise; uniform
    mistakes (any other label) make up the rest.
    """
    n = len(truth)
    label = truth.copy()
    target = int(round(noise * n))
    if target == 0:
        return label
    budget = int(round(systematic_share * target))
    chosen = np.zeros(n, dtype=bool)
    wrong = truth.copy()
    for mask, alternative, prob in rules:
        hit = mask & ~chosen & (alternative != truth) & (rng.random(n) < prob)
        wrong[hit] = alternative[hit]
        chosen |= hit
    systematic = _pick(rng, chosen, budget)
    label[systematic] = wrong[systematic]
    rest = np.ones(n, dtype=bool)
    rest[systematic] = False
    uniform = _pick(rng, rest, target - len(systematic))
    label[uniform] = (truth[uniform] + rng.integers(1, n_classes, len(uniform))) % n_classes
    return label


def _labels(
    config: SimulationConfig, rng: np.random.Generator, leads: _Leads, ev: _Events
) -> tuple[np.ndarray, np.ndarray]:
    n = config.n_leads
    attends = np.bincount(ev.lead[ev.kind == _KIND_INDEX["webinar_attend"]], minlength=n)
    meetings = np.bincount(ev.lead[ev.kind == _KIND_INDEX["meeting"]], minlength=n)
    downloads = np.bincount(
        ev.lead[np.isin(ev.kind, [_KIND_INDEX[k] for k in ("ebook", "whitepaper")])], minlength=n
    )
    stage, group = leads.stage, leads.group
    later = np.minimum(stage + 1, len(DEFAULT_STAGES) - 1)
    stage_rules = [
        (attends >= 2, later, 0.8),  # heavy webinar attendees look further along
        ((stage == _PU) & (meetings == 0), np.full(n, _DE), 0.3),  # no meeting seen: "decision"
        ((stage == _AW) & (downloads >= 3), np.full(n, _CO), 0.5),  # content-heavy: "consideration"
    ]
    sen = np.array([t[1] in _SENIOR_TECH for t in _TITLES[_TE]])
    persona = _GROUP_PERSONA[group]
    persona_rules = [
        (group == _STUDENT, np.full(n, _PR), 0.8),  # students look like practitioners
        ((group == _TE) & sen[np.minimum(leads.title_code, len(sen) - 1)], np.full(n, _EB), 0.6),
        (group == _VENDOR, np.full(n, _EB), 0.3),  # vendors' sales titles look like buyers
        (group == _SEEKER, np.full(n, _PR), 0.3),
    ]
    share = config.systematic_noise_share
    stage_label = _corrupt(rng, stage, len(DEFAULT_STAGES), stage_rules, config.label_noise, share)
    persona_label = _corrupt(
        rng, persona, len(DEFAULT_PERSONAS), persona_rules, config.label_noise, share
    )
    return stage_label, persona_label


# --------------------------------------------------------------------------- public


def simulate(
    config: SimulationConfig | None = None,
    *,
    on_step: Callable[[str], None] | None = None,
) -> Simulation:
    """Simulate leads, their events and the hidden truth (``config`` default
    ``SimulationConfig()``); ``on_step`` is called with each step's name as it starts
    ("profiles", "events", "labels", "tables").

    ``leads`` has ``SIMULATED_LEAD_COLUMNS``, ordered and numbered by creation time;
    ``events`` has ``EVENT_COLUMNS``, sorted by timestamp; ``truth`` ``TRUTH_COLUMNS``.
    """
    config = config or SimulationConfig()
    step = on_step or (lambda _name: None)
    seeds = np.random.SeedSequence(config.seed).spawn(4)
    rng_truth, rng_events, rng_props, rng_labels = (np.random.default_rng(s) for s in seeds)

    step("profiles")
    webinars = _webinar_dates(config, rng_truth)
    leads = _draw_leads(config, rng_truth, webinars)

    step("events")
    ev = _draw_events(config, rng_events, leads, webinars)

    step("labels")
    stage_label, persona_label = _labels(config, rng_labels, leads, ev)

    step("tables")
    n = config.n_leads
    order = np.lexsort((np.arange(n), leads.created))  # by creation time
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    width = max(6, len(str(n)))
    lead_ids = np.char.add("L", np.char.zfill((rank + 1).astype(str), width))
    events = _events_frame(rng_props, ev, leads, lead_ids)

    ids = _text(tuple(lead_ids), order)
    leads_frame = leads.profile.iloc[order].reset_index(drop=True)
    leads_frame.insert(0, "lead_id", ids)
    leads_frame["created_at"] = _timestamps(leads.created[order])
    leads_frame["stage"] = _text(DEFAULT_STAGES, stage_label[order])
    leads_frame["persona"] = _text(DEFAULT_PERSONAS, persona_label[order])
    truth = pd.DataFrame(
        {
            "lead_id": ids,
            "true_stage": _text(DEFAULT_STAGES, leads.stage[order]),
            "true_persona": _text(DEFAULT_PERSONAS, _GROUP_PERSONA[leads.group[order]]),
        }
    )
    leads_frame = leads_frame[list(SIMULATED_LEAD_COLUMNS)]
    return Simulation(leads=leads_frame, events=events, truth=truth, config=config)


_NEEDS_QUOTES = r'[,"\r\n]'


@functools.cache
def _clock() -> tuple[str, ...]:
    """The 86,400 times of day as ``HH:MM:SSZ``."""
    return tuple(
        f"{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60)
    )


def _iso_seconds(values: pd.Series) -> pa.Array:
    """UTC timestamps as ``2026-06-30T16:05:00Z`` text (whole seconds), missing kept missing.

    Built from a table of the window's days and one of the 86,400 times of day,
    which is much faster on millions of rows than formatting each timestamp.
    """
    naive = values.dt.tz_convert("UTC").dt.tz_localize(None)
    missing = naive.isna().to_numpy()
    seconds = naive.to_numpy().astype("datetime64[s]").astype(np.int64)
    seconds[missing] = 0 if (~missing).sum() == 0 else seconds[~missing].min()
    day, second = np.divmod(seconds, _DAY)
    first = int(day.min()) if len(day) else 0
    days = np.arange(first, (int(day.max()) if len(day) else 0) + 1).astype("datetime64[D]")
    day_text = pa.array(np.datetime_as_string(days).tolist(), type=pa.string())
    clock_text = pa.array(_clock(), type=pa.string())
    joined = pc.binary_join_element_wise(
        day_text.take(pa.array(day - first)), clock_text.take(pa.array(second)), "T"
    )
    return pc.if_else(pa.array(missing), pa.nulls(len(joined), pa.string()), joined)


def _needs_quotes(values: pd.Series) -> bool:
    distinct = pc.unique(pa.array(values, type=pa.large_string(), from_pandas=True))
    return bool(pc.any(pc.match_substring_regex(distinct, _NEEDS_QUOTES)).as_py())


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """CSV as pandas writes it (ISO 8601 ``Z`` timestamps), through pyarrow when that is safe.

    pyarrow writes millions of rows in a fraction of the time pandas takes; it is
    used when no header or text value needs quoting and every column is text,
    integer or a whole-second timestamp, so the bytes are the same as pandas would
    write. Otherwise pandas writes the file.
    """
    columns: dict[str, pa.Array] = {}
    fast = not any(re.search(_NEEDS_QUOTES, str(c)) for c in frame.columns)
    for name in frame.columns:
        values = frame[name]
        if not fast:
            break
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            present = values.dropna()
            fast = bool((present == present.dt.floor("s")).all())
            if fast:
                columns[str(name)] = _iso_seconds(values)
        elif pd.api.types.is_string_dtype(values) and not _needs_quotes(values):
            columns[str(name)] = pa.array(values, type=pa.large_string(), from_pandas=True)
        elif pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
            columns[str(name)] = pa.array(values, from_pandas=True)
        else:
            fast = False
    if not fast:
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ", lineterminator="\n")
        return
    import pyarrow.csv as pa_csv

    with path.open("wb") as fh:
        fh.write((",".join(map(str, frame.columns)) + "\n").encode("utf-8"))
        pa_csv.write_csv(
            pa.table(columns),
            fh,
            pa_csv.WriteOptions(include_header=False, quoting_style="none"),
        )


def write(
    sim: Simulation, out_dir: str | Path, fmt: Literal["csv", "parquet"] = "csv"
) -> dict[str, Path]:
    """Write ``leads``, ``events`` and ``truth`` to ``out_dir`` (created if needed) as
    ``<table>.<fmt>``, CSV or Parquet; returns table name to the file written.

    Timestamps in CSV are ISO 8601 in UTC (``2026-06-30T16:05:00Z``).
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in (("leads", sim.leads), ("events", sim.events), ("truth", sim.truth)):
        path = out / f"{name}.{fmt}"
        if fmt == "csv":
            _write_csv(frame, path)
        else:
            frame.to_parquet(path, index=False)
        paths[name] = path
    return paths
