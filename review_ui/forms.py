"""The review UI's forms (Flask-WTF: every form carries a CSRF token).

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from flask_wtf import FlaskForm
from wtforms import (
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
    ValidationError,
)
from wtforms.validators import DataRequired, Length, Optional

from data.schema import CORRECTION_REASONS
from review_ui.words import label_words

__all__ = [
    "NOTE_MAX",
    "REASONS",
    "BulkForm",
    "ConfirmForm",
    "DisableUserForm",
    "LoginForm",
    "PlainForm",
    "ReclassifyForm",
    "UserForm",
    "set_label_choices",
]

#: Why a rep reclassifies a lead: (code stored in the correction, words shown).
REASONS: tuple[tuple[str, str], ...] = CORRECTION_REASONS
#: Longest note a rep can write.
NOTE_MAX = 2000

_KEEP = ("", "— keep —")


class PlainForm(FlaskForm):
    """A form with only its CSRF token (logout, undo, retrain)."""

    next = HiddenField()


class LoginForm(FlaskForm):
    """User name and password."""

    name = StringField("User name", validators=[DataRequired(), Length(max=100)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    next = HiddenField()
    submit = SubmitField("Log in")


class _Expected(FlaskForm):
    """The labels the rep saw (empty: none) and the prediction they reviewed."""

    expected_stage = HiddenField()
    expected_persona = HiddenField()
    prediction_id = HiddenField(validators=[Optional()])
    next = HiddenField()
    #: The queue (with its filters and page) the rep came from: save-and-next walks it.
    back = HiddenField()

    def validate_prediction_id(self, field: Any) -> None:
        """A prediction id is a whole number in ASCII digits that fits a 64-bit column."""
        if field.data and not is_prediction_id(str(field.data)):
            raise ValidationError("not a prediction id")

    def expected(self, name: str) -> str | None:
        """The label the rep saw for ``name`` ("stage" or "persona"), or None."""
        return getattr(self, f"expected_{name}").data or None

    def prediction(self) -> int | None:
        """The reviewed prediction's id, or None."""
        data = self.prediction_id.data
        return int(data) if data else None


def is_prediction_id(text: str) -> bool:
    """ASCII digits of a positive 64-bit integer (``str.isdigit`` also takes ``²``)."""
    return text.isascii() and text.isdigit() and 0 < int(text) < 2**63


class ReclassifyForm(_Expected):
    """Set stage and/or persona, with a reason and an optional note."""

    stage = SelectField("Stage", choices=[_KEEP], validate_choice=True)
    persona = SelectField("Persona", choices=[_KEEP], validate_choice=True)
    reason = SelectField(
        "Reason", choices=[("", "— choose —"), *REASONS], validators=[DataRequired()]
    )
    note = TextAreaField("Note", validators=[Optional(), Length(max=NOTE_MAX)])
    submit = SubmitField("Reclassify")

    def validate_persona(self, field: Any) -> None:
        """At least one of stage and persona is set."""
        if not self.stage.data and not field.data:
            raise ValidationError("choose a stage or a persona")


class ConfirmForm(_Expected):
    """Agree with the model's stage and persona."""

    submit = SubmitField("Confirm model")


class BulkForm(FlaskForm):
    """Reclassify or confirm the leads ticked in the queue.

    The lead ids come as repeated ``lead_id`` values; each row also sends
    ``expected_stage:<id>``, ``expected_persona:<id>`` and ``prediction:<id>``.
    """

    action = SelectField(
        "Action", choices=[("reclassify", "Reclassify"), ("confirm", "Confirm model")]
    )
    stage = SelectField("Stage", choices=[_KEEP], validate_choice=True)
    persona = SelectField("Persona", choices=[_KEEP], validate_choice=True)
    reason = SelectField("Reason", choices=[("", "— reason —"), *REASONS])
    note = TextAreaField("Note", validators=[Optional(), Length(max=NOTE_MAX)])
    next = HiddenField()
    #: The number of leads the rep confirmed on the confirmation step ("" before it).
    confirmed = HiddenField()

    def validate_reason(self, field: Any) -> None:
        """Reclassifying needs a reason and a label."""
        if self.action.data != "reclassify":
            return
        if not field.data:
            raise ValidationError("choose a reason")
        if not self.stage.data and not self.persona.data:
            raise ValidationError("choose a stage or a persona")


class UserForm(FlaskForm):
    """Add a user (admins only)."""

    name = StringField("User name", validators=[DataRequired(), Length(max=100)])
    role = SelectField("Role", choices=[("rep", "Rep"), ("analyst", "Analyst"), ("admin", "Admin")])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=8, max=1024)])
    submit = SubmitField("Add user")


class DisableUserForm(FlaskForm):
    """Disable a user by name (admins only)."""

    name = HiddenField(validators=[DataRequired()])


_Menus = TypeVar("_Menus", ReclassifyForm, BulkForm)


def set_label_choices(form: _Menus, labels: Mapping[str, Sequence[str]]) -> _Menus:
    """Fill ``form``'s stage and persona menus from ``labels`` (first entry: keep the current
    label); returns ``form``."""
    form.stage.choices = [_KEEP, *((s, label_words(s)) for s in labels["stage"])]
    form.persona.choices = [_KEEP, *((p, label_words(p)) for p in labels["persona"])]
    return form


# ------------------------------------------- issue #19 part A: "leads like this one"


class SuggestionsForm(FlaskForm):
    """Accept (reclassify) or dismiss the suggested leads a rep ticked.

    The ticked suggestions come as repeated ``suggestion`` values (ids); the
    change itself (field, from, to) is the suggestion's, not the form's.
    """

    action = SelectField(
        "Action",
        choices=[
            ("accept", "Reclassify the ticked leads"),
            ("dismiss", "Dismiss the ticked leads"),
        ],
    )
    # Checked below: a dismissal may leave it out altogether.
    reason = SelectField("Reason", choices=[("", "— reason —"), *REASONS], validate_choice=False)
    note = TextAreaField("Note", validators=[Optional(), Length(max=NOTE_MAX)])
    submit = SubmitField("Apply to ticked leads")

    def validate_reason(self, field: Any) -> None:
        """Reclassifying needs a known reason (as a reclassify on the lead page does)."""
        if field.data and field.data not in dict(REASONS):
            raise ValidationError("Not a valid choice.")
        if self.action.data == "accept" and not field.data:
            raise ValidationError("choose a reason")
