"""What a lead, an engagement event and a label are: the data contract of the readers, the
simulator, the store, the feature builder and the API. Event *types* are a closed vocabulary
(an unknown type is an input error); labels (stages, personas) are learned from the data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from data.text import check_text
from data.values import as_utc

__all__ = [
    "CONTENT_TYPES",
    "Checked",
    "CORRECTION_REASONS",
    "DEFAULT_PERSONAS",
    "DEFAULT_SALES_READY_STAGES",
    "DEFAULT_STAGES",
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "LEAD_COLUMNS",
    "PAGE_CATEGORIES",
    "Event",
    "EventType",
    "LeadProfile",
    "to_utc",
]

#: Buying stages the simulator and demo use, earliest first. Real tables may use others.
DEFAULT_STAGES: tuple[str, ...] = ("awareness", "consideration", "decision", "purchase")
#: Stages that count as sales-ready unless routing settings say otherwise.
DEFAULT_SALES_READY_STAGES: tuple[str, ...] = ("decision", "purchase")
#: Persona segments the simulator and demo use.
DEFAULT_PERSONAS: tuple[str, ...] = (
    "economic_buyer",
    "technical_evaluator",
    "practitioner",
    "non_buyer",
)

EventType = Literal[
    "email_open",
    "email_click",
    "page_view",
    "content_download",
    "webinar_register",
    "webinar_attend",
    "form_submit",
    "demo_request",
    "trial_start",
    "meeting_booked",
]
#: The closed vocabulary of engagement event types.
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

#: Known values of the ``page_category`` property (open: others are kept as "other").
PAGE_CATEGORIES: tuple[str, ...] = (
    "home",
    "blog",
    "product",
    "pricing",
    "docs",
    "integrations",
    "case_study",
    "comparison",
    "roi",
    "careers",
    "about",
)
#: Known values of the ``content_type`` property.
CONTENT_TYPES: tuple[str, ...] = (
    "blog_post",
    "ebook",
    "whitepaper",
    "case_study",
    "comparison_guide",
    "analyst_report",
    "roi_calculator",
    "datasheet",
    "docs",
    "webinar",
)

#: Why a rep reclassifies a lead: (code stored with the correction, words shown to people).
#: The UI, the corrections API and the corrections import share this list.
CORRECTION_REASONS: tuple[tuple[str, str], ...] = (
    ("wrong_title", "Wrong title or role"),
    ("not_in_market", "Not in market"),
    ("talking_to_sales", "Already talking to sales"),
    ("student_job_seeker", "Student or job seeker"),
    ("other", "Other"),
)


def to_utc(value: datetime) -> datetime:
    """Naive timestamps are taken as UTC; aware ones are converted to UTC.

    A time whose UTC equivalent falls outside year 1–9999
    (``0001-01-01T00:00:00+05:00``) is a ``ValueError`` (a 400 naming the field),
    not the ``OverflowError`` of ``astimezone``.
    """
    try:
        return as_utc(value)
    except OverflowError:
        raise ValueError(
            f"{value.isoformat()} is outside the range of timestamps (years 1 to 9999 in UTC)"
        ) from None


def _storable(value: Any, info: ValidationInfo) -> Any:
    """The store's text rule (data/text.py) on a field's text, and on an extra mapping's keys
    and text values: a model that validates holds only text every store accepts."""
    if isinstance(value, str):
        check_text(value, str(info.field_name))
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, "extra field name")
            if isinstance(item, str):
                check_text(item, f"extra field {key!r}")
    return value


def _utc_or_none(value: datetime | None) -> datetime | None:
    """A model's time field in UTC (:func:`to_utc`); an optional one may be None."""
    return None if value is None else to_utc(value)


class Checked(dict[str, Any]):
    """The ``model_dump`` of a :class:`LeadProfile` or :class:`Event` (an event with its
    ``lead_id`` and optional ``event_id``): the store takes its values as the model
    validated them instead of checking them again by hand. Build one only from a model.
    """


class LeadProfile(BaseModel):
    """A lead's profile and firmographics, as marketing automation knows them."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    lead_id: str = Field(min_length=1, max_length=200)
    job_title: str | None = Field(default=None, max_length=300)
    seniority: str | None = Field(default=None, max_length=100)
    department: str | None = Field(default=None, max_length=100)
    company: str | None = Field(default=None, max_length=300)
    company_size: int | None = Field(default=None, ge=0, le=10_000_000)
    industry: str | None = Field(default=None, max_length=100)
    country: str | None = Field(default=None, max_length=100)
    lead_source: str | None = Field(default=None, max_length=100)
    created_at: datetime | None = None
    #: Free extra fields of a CRM export: scalar values only.
    extra: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    _text = field_validator("*")(_storable)
    _utc = field_validator("created_at")(_utc_or_none)


class Event(BaseModel):
    """One engagement event of a lead: an email open, a page view, a demo request, …"""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    lead_id: str = Field(min_length=1, max_length=200)
    timestamp: datetime
    type: EventType
    page_category: str | None = Field(default=None, max_length=100)
    content_type: str | None = Field(default=None, max_length=100)
    content_topic: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=100)

    _text = field_validator("*")(_storable)
    _utc = field_validator("timestamp")(_utc_or_none)

    def properties(self) -> dict[str, Any]:
        """The event's properties (everything but lead id, timestamp and type)."""
        return {
            k: v
            for k, v in self.model_dump(exclude={"lead_id", "timestamp", "type"}).items()
            if v is not None
        }


#: Columns of a leads table (one row a lead) besides free extra columns.
LEAD_COLUMNS: tuple[str, ...] = tuple(n for n in LeadProfile.model_fields if n != "extra")
#: Columns of an events table: the event properties are flattened into columns.
EVENT_COLUMNS: tuple[str, ...] = tuple(Event.model_fields)
