"""The review UI's pages: login, the queue, a lead, corrections, models, users.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from concurrent import futures
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sansio.blueprints import BlueprintSetupState
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from data.review_queue import (
    QueueItem,
    label_choices,
    model_versions,
    queue_facets,
    queue_item,
    review_queue,
)
from data.values import count_words, percent
from review_ui import auth
from review_ui.forms import (
    REASONS,
    BulkForm,
    ConfirmForm,
    DisableUserForm,
    LoginForm,
    PlainForm,
    ReclassifyForm,
    SuggestionsForm,
    UserForm,
    is_prediction_id,
    set_label_choices,
)
from review_ui.jobs import JobBusy
from review_ui.models_page import in_thread, registry_state, rescore_state, serving_state
from review_ui.present import (
    correction_rows,
    event_label,
    heat_level,
    probability_bars,
    reason_lines,
    weekly_timeline,
)
from review_ui.security import apply_headers
from review_ui.words import day_words, label_words, when_words

__all__ = ["bp", "wait_for_suggestions"]

_log = logging.getLogger(__name__)

bp = Blueprint(
    "review",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/review/static",
)

_PAGE_SIZES = (25, 50, 100, 200)
_BULK_MAX = 200
_RECENT_ACTIONS = 20
_REASON_WORDS = dict(REASONS)
#: Short names of the queue's reasons, for the chips (the sentence is the tooltip).
_QUEUE_REASON_NAMES = {
    "learned_wrong": "Likely wrong (learned from corrections)",
    "possible_mislabel": "Marketing's stage in doubt",
    "sales_ready_unsure": "Unsure sales call",
    "close_call": "Close call",
    "stage_changed": "Stage changed",
    "possible_persona_mislabel": "Marketing's persona in doubt",
    "persona_close_call": "Persona close call",
}


@bp.record_once
def _on_register(state: BlueprintSetupState) -> None:
    # Logins, CSRF and the services come from review_ui.init_app, which runs first.
    if "review_ui" not in state.app.extensions:
        raise RuntimeError("install the review UI with review_ui.init_app(app, store=..., ...)")


# ------------------------------------------------------------------- plumbing


def _ui() -> Any:
    return current_app.extensions["review_ui"]


def _store() -> Any:
    return _ui().store()


def _similar() -> Any:
    return _ui().suggestions


def _is_partial() -> bool:
    return request.headers.get("HX-Request", "").lower() == "true"


def _safe_next(target: str | None, default: str) -> str:
    """A redirect target on this site only: a path (so no scheme, no host), not ``//``."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    return default if "\\" in target or any(ord(ch) < 32 for ch in target) else target


@bp.before_request
def _before() -> Response | None:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        _ui().csrf.protect()
    if current_user.is_authenticated and auth.session_expired():
        auth.log_out()
        flash("Your session has ended. Please log in again.", "info")
        return redirect(url_for("review.login", next=request.full_path))
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    static = request.endpoint == "review.static"
    apply_headers(response, static=static)
    if not static:
        response.vary.add("HX-Request")
    return response


@bp.app_template_filter("pct")
def _pct(value: float | None, digits: int = 0) -> str:
    return percent(value, digits=digits, missing="—")


bp.add_app_template_filter(when_words, "when")
bp.add_app_template_filter(day_words, "day")
bp.add_app_template_filter(label_words, "label")


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    return {
        "can": lambda role: auth.has_role(current_user, role),
        "reason_words": _REASON_WORDS,
        "queue_reason_names": _QUEUE_REASON_NAMES,
        "event_label": event_label,
        "heat_level": heat_level,
    }


#: The UI's error pages: title and words per status (a 400 says what was wrong, when it can).
_ERROR_PAGES = {
    400: ("Bad request", "The request could not be understood."),
    403: ("Not allowed", "Your role does not allow this. Ask an admin if you need it."),
    404: ("Not found", "There is nothing here."),
}


def _error_page(exc: Any) -> tuple[str, int]:
    code = exc.code
    title, message = _ERROR_PAGES[code]
    if code == 400:
        message = getattr(exc, "description", None) or message
    return render_template("review/error.html", code=code, title=title, message=message), code


for _code in _ERROR_PAGES:
    bp.register_error_handler(_code, _error_page)


# --------------------------------------------------------------- login/logout


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Log in with a user name and password (the failure message names neither)."""
    form = LoginForm()
    default = url_for("review.queue")
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(_safe_next(request.args.get("next"), default))
        form.next.data = request.args.get("next", "")
    if form.validate_on_submit():
        user = _store().authenticate(form.name.data or "", form.password.data or "")
        if user is not None and auth.log_in(auth.ReviewUser.from_store(user)):
            flash(f"Welcome, {user.name}.", "success")
            return redirect(_safe_next(form.next.data, default))
        flash("Wrong user name or password.", "error")
        return render_template("review/login.html", form=form), 401
    return render_template("review/login.html", form=form), 400 if request.method == "POST" else 200


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    """End the session (POST with a CSRF token, so no page can log a rep out)."""
    auth.log_out(_store())
    flash("You are logged out.", "info")
    return redirect(url_for("review.login"))


# ----------------------------------------------------------------------- queue


#: Highest queue page number taken from a URL (pages beyond it show as this one).
_MAX_PAGE = 1_000_000


def _queue_args(args: MultiDict[str, str] | None = None) -> dict[str, Any]:
    args = request.args if args is None else args
    per = args.get("per", 50, type=int)
    return {
        "stage": args.get("stage") or None,
        "persona": args.get("persona") or None,
        "route": args.get("route") or None,
        "reviewed": {"yes": True, "no": False}.get(args.get("reviewed", "")),
        "since": args.get("since", type=date.fromisoformat),
        "search": (args.get("q") or "").strip()[:200] or None,
        "per": per if per in _PAGE_SIZES else 50,
        # Clamped: a page past any queue is just empty, never an integer overflow in SQL.
        "page": min(max(1, args.get("page", 1, type=int)), _MAX_PAGE),
    }


def _current(item: QueueItem, rep: Mapping[str, str | None] | None) -> dict[str, str | None]:
    """The labels a rep sees as current: a rep's label, else the model's, else marketing's."""
    rep = rep or {}
    return {
        "stage": rep.get("stage") or item.stage or item.marketing_stage,
        "persona": rep.get("persona") or item.persona or item.marketing_persona,
        "rep_stage": rep.get("stage"),
        "rep_persona": rep.get("persona"),
    }


def _row_context(items: list[QueueItem]) -> dict[str, dict[str, str | None]]:
    reps = _store().current_labels([i.lead_id for i in items]) if items else {}
    return {i.lead_id: _current(i, reps.get(i.lead_id)) for i in items}


def _page_url(query: Mapping[str, str], page: int) -> str:
    """The queue URL of ``page`` with the other (non-blank) parameters of ``query``."""
    params = {k: v for k, v in query.items() if k != "page" and v}
    params["page"] = str(page)
    return url_for("review.queue", **params)


def _queue_page(store: Any, args: Mapping[str, Any], extra: int = 0) -> Any:
    """The queue page ``args`` (from :func:`_queue_args`) asks for, ``extra`` leads longer."""
    filters = {k: args[k] for k in ("stage", "persona", "route", "reviewed", "since", "search")}
    return review_queue(
        store,
        limit=args["per"] + extra,
        offset=(args["page"] - 1) * args["per"],
        config=_ui().queue_config,
        **filters,
    )


def _next_in_queue(lead_id: str, back: str) -> str | None:
    """The lead after ``lead_id`` in the queue ``back`` points at (its filters and page)."""
    parts = urlsplit(back)
    if parts.path.startswith("/review/suggestions/"):
        return _next_suggested(lead_id, parts.path)
    if parts.path != url_for("review.queue"):
        return None
    args = _queue_args(MultiDict(parse_qsl(parts.query)))
    page = _queue_page(_store(), args, extra=1)
    unreviewed = [i.lead_id for i in page.items if not i.reviewed]
    return _following([i.lead_id for i in page.items], lead_id, unreviewed)


def _following(ids: list[str], lead_id: str, otherwise: list[str]) -> str | None:
    """The first other id after ``lead_id`` in ``ids``; from ``otherwise`` when it is not in them."""
    rest = ids[ids.index(lead_id) + 1 :] if lead_id in ids else otherwise
    return next((x for x in rest if x != lead_id), None)


@bp.route("/review/")
@auth.role_required("rep")
def queue() -> Any:
    """The review queue: filters, search, paging; the table alone for ``HX-Request``."""
    args = _queue_args()
    store = _store()
    page = _queue_page(store, args)
    labels = label_choices(store)
    bulk = set_label_choices(BulkForm(), labels)
    here = request.full_path.rstrip("?")
    bulk.next.data = here
    context = {
        "page": page,
        "last_batch": session.get("review_batch"),
        "args": args,
        "current": _row_context(page.items),
        "facets": queue_facets(store),
        "labels": labels,
        "bulk": bulk,
        "next_url": here,
        "prev_href": _page_url(request.args, args["page"] - 1) if page.has_previous else None,
        "next_href": _page_url(request.args, args["page"] + 1) if page.has_next else None,
        "since_text": request.args.get("since", ""),
    }
    template = "review/_queue_table.html" if _is_partial() else "review/queue.html"
    return render_template(template, **context)


def _row_response(lead_id: str, message: str | None, category: str, status: int = 200) -> Any:
    """The ``_row.html`` partial of one lead, carrying the message for the page to show."""
    item = queue_item(_store(), lead_id, config=_ui().queue_config)
    if item is None:
        return Response(status=204)
    html = render_template(
        "review/_row.html",
        item=item,
        cur=_row_context([item])[lead_id],
        labels=label_choices(_store()),
        next_url=url_for("review.queue"),
        message=message,
        message_category=category,
    )
    return html, status


def _tell(lead_id: str, message: str, category: str, next_url: str | None, default: str) -> Any:
    """The lead's row with ``message`` for a partial request, else flash it and redirect (PRG)."""
    if _is_partial():
        return _row_response(lead_id, message, category)
    flash(message, category)
    return redirect(_safe_next(next_url, default))


# ------------------------------------------------------------------------ lead


def _lead_or_404(lead_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    store = _store()
    lead = store.get_lead(lead_id)
    predictions = store.predictions_for(lead_id, limit=25)
    if lead is None and not predictions:
        abort(404)
    return lead, predictions


@bp.route("/review/leads/<path:lead_id>")
@auth.role_required("rep")
def lead(lead_id: str) -> Any:
    """A lead: profile, weekly engagement, the model's view, predictions, corrections."""
    store = _store()
    profile, predictions = _lead_or_404(lead_id)
    latest = predictions[0] if predictions else None
    current = store.labels_for(lead_id)
    probabilities = latest.get("probabilities") if latest else None
    reasons = latest.get("reasons") if latest else None
    labels = _label_menus(latest, current)

    queue_url = _safe_next(request.args.get("back"), url_for("review.queue"))
    # After a save that stays, or an undo, the lead page keeps the queue it came from.
    here = url_for("review.lead", lead_id=lead_id, back=queue_url)
    reclassify, confirm = _lead_forms(labels, current, latest, here, queue_url)
    sources = _label_sources(store.current_labels([lead_id]).get(lead_id, {}), latest, profile)
    history = store.corrections_for(lead_id)
    by_id = {c["id"]: c for c in history}
    undo_preview = [
        (by_id[i]["field"], by_id[i]["old_label"]) for i in _undo_targets(lead_id) if i in by_id
    ]
    events = store.events_for(lead_id, limit=2000)
    weeks, kinds = weekly_timeline(events)
    return render_template(
        "review/lead.html",
        lead_id=lead_id,
        profile=profile,
        latest=latest,
        predictions=predictions,
        current=current,
        current_source=sources,
        undo_preview=undo_preview,
        item=queue_item(store, lead_id, config=_ui().queue_config),
        stage_bars=probability_bars(probabilities, "stage"),
        persona_bars=probability_bars(probabilities, "persona"),
        model_reasons=[
            {**r, "head": head}
            for head in ("stage", "persona")
            for r in reason_lines(reasons, head)
        ],
        weeks=weeks,
        kinds=kinds,
        recent_events=list(reversed(events[-12:])),
        event_count=len(events),
        corrections=correction_rows(history),
        reclassify=reclassify,
        confirm=confirm,
        labels=labels,
        queue_url=queue_url,
        here=here,
        next_lead=_next_in_queue(lead_id, queue_url),
        similar_sets=_similar().sets_for_lead(store, lead_id),
        similar_pending=[
            {**c, "recent": datetime.now(UTC) - c["created_at"] < _BUILD_GRACE}
            for c in _similar().pending_for_lead(store, lead_id)
        ],
        method_words=_similar().METHODS,
    )


def _lead_forms(
    labels: Mapping[str, Any], current: Mapping[str, Any], latest: Any, here: str, back: str
) -> tuple[ReclassifyForm, ConfirmForm]:
    """The lead page's reclassify and confirm forms, stamped with what the rep saw."""
    reclassify = set_label_choices(ReclassifyForm(), labels)
    confirm = ConfirmForm()
    for form in (reclassify, confirm):
        form.expected_stage.data = current.get("stage") or ""
        form.expected_persona.data = current.get("persona") or ""
        form.prediction_id.data = str(latest["id"]) if latest else ""
        form.next.data = here
        form.back.data = back
    return reclassify, confirm


def _label_sources(rep: Mapping[str, Any], latest: Any, profile: Any) -> dict[str, str]:
    """Where each current label comes from: a rep, the model or marketing."""
    sources = {}
    for field in ("stage", "persona"):
        if rep.get(field):
            sources[field] = "rep"
        elif latest and latest.get(field):
            sources[field] = "model"
        elif profile and profile.get(f"marketing_{field}"):
            sources[field] = "marketing"
    return sources


# ----------------------------------------------------------------- corrections


def _remember(lead_id: str, ids: list[int]) -> None:
    """Keep this rep's last action per lead in the session, for "undo" (``u``)."""
    recent = [*_forget(lead_id), {"lead": lead_id, "ids": ids}]
    session["review_recent"] = recent[-_RECENT_ACTIONS:]


def _remember_batch(batch_id: str, verb: str, count: int) -> None:
    """Keep this rep's last bulk action in the session, for the queue's "undo batch" bar."""
    session["review_batch"] = {
        "id": batch_id,
        "verb": verb,
        "count": count,
        "at": datetime.now(UTC).isoformat(),
    }


def _recall(lead_id: str) -> list[int]:
    """The ids of this rep's last action on ``lead_id`` (``_remember`` keeps one per lead)."""
    entries = [r for r in session.get("review_recent", []) if r.get("lead") == lead_id]
    return [int(i) for i in entries[-1].get("ids", [])] if entries else []


def _forget(lead_id: str) -> list[dict[str, Any]]:
    """Drop this rep's remembered action on ``lead_id``; returns the others."""
    rest = [r for r in session.get("review_recent", []) if r.get("lead") != lead_id]
    session["review_recent"] = rest
    return rest


def _conflict_note(lead_id: str, result: Any) -> str:
    """Who changed the label under the rep, for the flash message."""
    before = [
        c
        for c in _store().corrections_for(lead_id)
        if c["field"] == result.field and c["id"] < result.id
    ]
    if before:
        last = before[-1]
        who = f"{last['reviewer']} set it to {last['new_label'] or 'nothing'}"
    else:
        who = f"it is now {result.old_label or 'unset'}"
    return f"the {result.field} changed while you had the lead open ({who})"


def _advance(lead_id: str, form: Any) -> tuple[str, str] | None:
    """Save-and-next: where to go after saving, and the words for it (None: stay)."""
    if _is_partial() or not request.form.get("advance"):
        return None
    back = _safe_next(form.back.data, url_for("review.queue"))
    following = _next_in_queue(lead_id, back)
    if following is None:
        return back, " That was the last lead of this queue page."
    return url_for("review.lead", lead_id=following, back=back), f" Next in the queue: {following}."


def _finish(
    lead_id: str,
    stored: list[Any],
    verb: str,
    form: Any,
    default: str,
    advance: tuple[str, str] | None,
) -> Any:
    """Flash (or return in the partial) what happened, then redirect (PRG) to ``form.next``
    or, with ``advance`` (from :func:`_advance`), to the next lead."""
    conflicts = [r for r in stored if r.conflict]
    if stored:
        _remember(lead_id, [r.id for r in stored])
    changes = ", ".join(f"{r.field} → {label_words(r.new_label)}" for r in stored)
    message = f"{verb} {lead_id}: {changes}." if changes else f"Nothing to change on {lead_id}."
    if conflicts:
        notes = "; ".join(_conflict_note(lead_id, r) for r in conflicts)
        message = f"{message} Heads up: {notes}. Both corrections are kept; yours is now current."
    next_url = form.next.data
    if advance is not None:
        next_url, words = advance
        message += words
    return _tell(lead_id, message, "warning" if conflicts else "success", next_url, default)


def _correct(lead_id: str, field: str, label: str, **how: Any) -> Any:
    """Append this rep's correction made in the UI (``how``: the store's other arguments)."""
    return _store().add_correction(
        lead_id, field, label, reviewer=current_user.name, source="ui", **how
    )


def _correct_heads(lead_id: str, form: Any, labels: Mapping[str, Any], **how: Any) -> list[Any]:
    """:func:`_correct` each head ``labels`` sets, stamped with what the rep saw on ``form``."""
    return [
        _correct(lead_id, field, labels[field], expected_label=form.expected(field), **how)
        for field in ("stage", "persona")
        if labels.get(field)
    ]


def _note(form: Any) -> str | None:
    return (form.note.data or "").strip() or None


def _form_errors(form: Any) -> str:
    parts = []
    for name, errors in form.errors.items():
        label = getattr(getattr(form, name, None), "label", None)
        words = label.text if label is not None else name
        parts.append(f"{words}: {'; '.join(str(e) for e in errors)}")
    return "Not saved — " + " · ".join(parts) if parts else "Not saved."


def _reject(form: Any, lead_id: str | None, default: str) -> Any:
    message = _form_errors(form)
    if _is_partial() and lead_id is not None:
        return _row_response(lead_id, message, "error", status=422)
    flash(message, "error")
    return redirect(_safe_next(getattr(form, "next", None) and form.next.data, default))


def _label_menus(latest: Any = None, current: Any = None) -> dict[str, list[str]]:
    """The label choices, plus the labels of a lead's ``latest`` prediction and its ``current``
    labels that the store lacks."""
    out = {head: list(values) for head, values in label_choices(_store()).items()}
    probs = latest.get("probabilities") if latest else None
    for head in ("stage", "persona"):
        for value in [*(b.label for b in probability_bars(probs, head)), (current or {}).get(head)]:
            if value and value not in out[head]:
                out[head].append(value)
    return out


@bp.route("/review/leads/<path:lead_id>/reclassify", methods=["POST"])
@auth.role_required("rep")
def reclassify(lead_id: str) -> Any:
    """Append a reclassify correction per field the rep set (stage and/or persona)."""
    _, predictions = _lead_or_404(lead_id)
    default = url_for("review.lead", lead_id=lead_id)
    latest = predictions[0] if predictions else None
    form = set_label_choices(ReclassifyForm(), _label_menus(latest, _store().labels_for(lead_id)))
    if not form.validate():
        return _reject(form, lead_id, default)
    advance = _advance(lead_id, form)
    chosen = {field: getattr(form, field).data for field in ("stage", "persona")}
    try:
        stored = _correct_heads(
            lead_id,
            form,
            chosen,
            kind="reclassify",
            reason=form.reason.data,
            note=_note(form),
            prediction_id=form.prediction(),
        )
    except ValueError as exc:
        abort(400, description=str(exc))
    _offer_similar(stored)
    return _finish(lead_id, stored, "Reclassified", form, default, advance)


@bp.route("/review/leads/<path:lead_id>/confirm", methods=["POST"])
@auth.role_required("rep")
def confirm(lead_id: str) -> Any:
    """Agree with the model: a ``confirm`` row per head the model predicted."""
    _, predictions = _lead_or_404(lead_id)
    default = url_for("review.lead", lead_id=lead_id)
    form = ConfirmForm()
    if not form.validate():
        return _reject(form, lead_id, default)
    wanted = form.prediction()
    reviewed = next((p for p in predictions if p["id"] == wanted), None) if wanted else None
    reviewed = reviewed or (predictions[0] if predictions else None)
    if reviewed is None:
        abort(400, description="This lead has no prediction to confirm.")
    advance = _advance(lead_id, form)
    stored = _correct_heads(lead_id, form, reviewed, kind="confirm", prediction_id=reviewed["id"])
    return _finish(lead_id, stored, "Confirmed", form, default, advance)


def _undo(ids: list[int], lead_id: str, next_url: str | None, default: str) -> Any:
    stored = []
    for cid in ids:
        try:
            stored.append(_store().undo_correction(cid, reviewer=current_user.name, source="ui"))
        except KeyError:
            abort(404)
    changes = ", ".join(f"{r.field} back to {label_words(r.new_label, 'unset')}" for r in stored)
    message = f"Undone on {lead_id}: {changes}."
    conflict = any(r.conflict for r in stored)
    if conflict:
        message += (
            " Heads up: someone changed this lead after that correction; it is undone all the same."
        )
    return _tell(lead_id, message, "warning" if conflict else "success", next_url, default)


@bp.route("/review/corrections/<int:correction_id>/undo", methods=["POST"])
@auth.role_required("rep")
def undo(correction_id: int) -> Any:
    """Append an undo row for one correction (nothing is overwritten)."""
    form = PlainForm()
    lead_id = request.form.get("lead_id") or ""
    if not lead_id or all(c["id"] != correction_id for c in _store().corrections_for(lead_id)):
        abort(404)
    return _undo([correction_id], lead_id, form.next.data, url_for("review.lead", lead_id=lead_id))


def _undo_targets(lead_id: str) -> list[int]:
    """The corrections ``u`` undoes: this rep's last action here, else their newest live row."""
    ids = _recall(lead_id)
    if ids:
        return ids
    mine = [
        r["id"]
        for r in correction_rows(_store().corrections_for(lead_id))
        if r["reviewer"] == current_user.name and r["kind"] != "undo" and not r["undone"]
    ]
    return mine[:1]


@bp.route("/review/leads/<path:lead_id>/undo-last", methods=["POST"])
@auth.role_required("rep")
def undo_last(lead_id: str) -> Any:
    """Undo this rep's last action on the lead (the ``u`` key)."""
    _lead_or_404(lead_id)
    form = PlainForm()
    default = url_for("review.lead", lead_id=lead_id)
    ids = _undo_targets(lead_id)
    if not ids:
        return _tell(
            lead_id, f"Nothing of yours to undo on {lead_id}.", "info", form.next.data, default
        )
    _forget(lead_id)
    return _undo(ids, lead_id, form.next.data, default)


@bp.route("/review/bulk", methods=["POST"])
@auth.role_required("rep")
def bulk() -> Any:
    """Reclassify or confirm the leads ticked in the queue, one correction row each."""
    form = set_label_choices(BulkForm(), _label_menus())
    default = url_for("review.queue")
    lead_ids = list(dict.fromkeys(x for x in request.form.getlist("lead_id") if x))
    if not lead_ids:
        flash("Tick at least one lead first.", "error")
        return redirect(_safe_next(form.next.data, default))
    if len(lead_ids) > _BULK_MAX:
        abort(400, description=f"At most {_BULK_MAX} leads at once.")
    if not form.validate():
        return _reject(form, None, default)
    if form.confirmed.data != str(len(lead_ids)):
        # Nothing is written until the rep has seen how many leads it touches.
        return _bulk_confirm_page(form, lead_ids)
    batch_id = uuid.uuid4().hex
    done, conflicted, skipped = _bulk_write(form, lead_ids, batch_id)
    verb = "Confirmed" if form.action.data == "confirm" else "Reclassified"
    message = f"{verb} {count_words(len(done), 'lead')}."
    if done:
        _remember_batch(batch_id, verb.lower(), len(done))
        message += " Undo the whole batch from the bar above the queue."
    if conflicted:
        message += (
            f" Heads up: {', '.join(conflicted)} changed while you had the queue open;"
            " both corrections are kept and yours is now current."
        )
    if skipped:
        message += f" Skipped (not scored): {', '.join(sorted(set(skipped)))}."
    flash(message, "warning" if conflicted or skipped else "success")
    return redirect(_safe_next(form.next.data, default))


def _bulk_write(
    form: BulkForm, lead_ids: list[str], batch_id: str
) -> tuple[list[str], list[str], list[str]]:
    """One correction row per ticked lead and head: (done, conflicted, skipped) lead ids."""
    latest = _store().latest_predictions(lead_ids, with_features=False)
    confirming = form.action.data == "confirm"
    how = {
        "kind": "confirm" if confirming else "reclassify",
        "reason": None if confirming else form.reason.data,
        "note": _note(form),
        "batch_id": batch_id,
    }
    done: list[str] = []
    conflicted: list[str] = []
    skipped: list[str] = []
    for lead_id in lead_ids:
        prediction = latest.get(lead_id)
        if prediction is None:
            skipped.append(lead_id)
            continue
        raw_pid = request.form.get(f"prediction:{lead_id}") or ""
        how["prediction_id"] = int(raw_pid) if is_prediction_id(raw_pid) else prediction["id"]
        results = []
        for field in ("stage", "persona"):
            expected = request.form.get(f"expected_{field}:{lead_id}") or None
            label = prediction.get(field) if confirming else getattr(form, field).data
            if not label:
                continue
            try:
                results.append(_correct(lead_id, field, label, expected_label=expected, **how))
            except (KeyError, ValueError):
                skipped.append(lead_id)
                break
        if results:
            _remember(lead_id, [r.id for r in results])
            done.append(lead_id)
            if any(r.conflict for r in results):
                conflicted.append(lead_id)
    return done, conflicted, skipped


def _bulk_confirm_page(form: BulkForm, lead_ids: list[str]) -> Any:
    """The count and the change, with Confirm (posts it all again) and Cancel."""
    hidden = [
        (key, value)
        for key in request.form
        if key.startswith(("expected_stage:", "expected_persona:", "prediction:"))
        for value in request.form.getlist(key)
    ]
    return render_template(
        "review/bulk_confirm.html",
        form=form,
        lead_ids=lead_ids,
        hidden=hidden,
        count=len(lead_ids),
        back=_safe_next(form.next.data, url_for("review.queue")),
        reason_text=_REASON_WORDS.get(form.reason.data or "", ""),
    )


@bp.route("/review/batches/<batch_id>/undo", methods=["POST"])
@auth.role_required("rep")
def undo_batch(batch_id: str) -> Any:
    """Undo a whole bulk action of this rep: one undo row per correction it made."""
    form = PlainForm()
    store = _store()
    rows = store.corrections_in_batch(batch_id)
    if not rows:
        abort(404)
    if any(r["reviewer"] != current_user.name for r in rows):
        abort(403)
    results = store.undo_batch(
        batch_id, reviewer=current_user.name, undo_batch_id=uuid.uuid4().hex, source="ui"
    )
    leads = sorted({r.lead_id for r in results})
    if (session.get("review_batch") or {}).get("id") == batch_id:
        session.pop("review_batch", None)
    for lead_id in leads:
        _forget(lead_id)
    if results:
        message = (
            f"Undid the batch: {count_words(len(results), 'correction')}"
            f" on {count_words(len(leads), 'lead')} put back."
        )
        category = "warning" if any(r.conflict for r in results) else "success"
        if category == "warning":
            message += (
                " Heads up: some of these leads were changed after the batch; undone all the same."
            )
    else:
        message, category = "That batch was already undone.", "info"
    flash(message, category)
    return redirect(_safe_next(form.next.data, url_for("review.queue")))


# ---------------------------------------------------------------------- models


@bp.route("/review/models")
@auth.role_required("analyst")
def models() -> Any:
    """Served model against the champion, re-scoring progress, the alias history,
    versions and their gate decisions, and the retrain button."""
    ui = _ui()
    cfg = current_app.config
    registry = registry_state(
        cfg.get("MLFLOW_TRACKING_URI"), cfg.get("MODEL_NAME") or "lead-readiness"
    )
    serving = serving_state(ui.holder, registry["champion"])
    target = registry["champion"] or (serving or {}).get("version")
    return render_template(
        "review/models.html",
        serving=serving,
        registry=registry,
        rescore=rescore_state(ui.rescorer, _store(), target),
        versions=model_versions(_store()),
        job=ui.jobs.status(),
        retrain_ready=ui.retrain is not None,
    )


@bp.route("/review/models/retrain", methods=["POST"])
@auth.role_required("analyst")
def retrain() -> Any:
    """Start a retrain in the background (one at a time)."""
    ui = _ui()
    job = ui.retrain_job(current_user.name)
    if job is None:
        flash("Retraining is not set up on this server.", "error")
    else:
        try:
            ui.jobs.start(job, started_by=current_user.name)
        except JobBusy:
            flash("A retrain is already running; its progress is below.", "warning")
        else:
            flash("Retrain started. Progress shows below; you can leave this page.", "success")
    if _is_partial():
        return jsonify(ui.jobs.status())
    return redirect(url_for("review.models"))


@bp.route("/review/models/retrain/status")
@auth.role_required("analyst")
def retrain_status() -> Any:
    """The retrain job's status as JSON (polled by the models page)."""
    response = jsonify(_ui().jobs.status())
    response.headers["Cache-Control"] = "no-store"
    return response


# ----------------------------------------------------------------------- users


@bp.route("/review/users", methods=["GET", "POST"])
@auth.role_required("admin")
def users() -> Any:
    """List users; add one (POST)."""
    form = UserForm()
    if request.method == "POST":
        if form.validate():
            try:
                user = _store().create_user(
                    form.name.data or "", form.role.data, form.password.data
                )
            except ValueError as exc:
                flash(f"Not added: {exc}", "error")
            else:
                flash(f"Added {user.name} ({user.role}).", "success")
        else:
            flash(_form_errors(form), "error")
        return redirect(url_for("review.users"))
    return render_template("review/users.html", users=_store().list_users(), form=form)


@bp.route("/review/users/disable", methods=["POST"])
@auth.role_required("admin")
def disable_user() -> Any:
    """Disable a user: they cannot log in, and their open session ends."""
    form = DisableUserForm()
    if not form.validate():
        abort(400, description="Which user?")
    name = form.name.data or ""
    if name == current_user.name:
        flash("You cannot disable yourself.", "error")
        return redirect(url_for("review.users"))
    try:
        _store().deactivate_user(name)
    except KeyError:
        abort(404)
    flash(f"Disabled {name}.", "success")
    return redirect(url_for("review.users"))


# ------------------------------------------------ "leads like this one" (#19 part A)


_BUILDS: set[futures.Future[int]] = set()
_BUILDS_LOCK = threading.Lock()
#: A reclassify younger than this whose suggestions are missing shows as "being looked for".
_BUILD_GRACE = timedelta(minutes=2)


def _build_all(similar: Any, store: Any, correction_ids: list[int]) -> int:
    """Build each correction's suggestions; returns how many builds failed (logged)."""
    failed = 0
    for cid in correction_ids:
        try:
            similar.build_suggestions(store, cid)
        except Exception:  # noqa: BLE001 - a background job: log it, the lead page offers a retry
            _log.exception("building suggestions for correction %s failed", cid)
            failed += 1
    return failed


def wait_for_suggestions(timeout: float | None = None) -> bool:
    """Wait for the background builds started so far (tests, shutdown); True if all finished."""
    with _BUILDS_LOCK:
        builds = list(_BUILDS)
    return not futures.wait(builds, timeout).not_done


def _offer_similar(stored: list[Any]) -> None:
    """Build the suggestions of each label change just saved, off the request."""
    ids = [
        r.id
        for r in stored
        if r.kind == "reclassify" and r.old_label and r.old_label != r.new_label
    ]
    if not ids:
        return
    # No flash of its own: the lead page's card says the leads are being looked for.
    store, similar = _store(), _similar()
    build = in_thread(lambda: _build_all(similar, store, ids), "similar-build")
    with _BUILDS_LOCK:
        _BUILDS.add(build)
    build.add_done_callback(_forget_build)


def _forget_build(build: futures.Future[int]) -> None:
    with _BUILDS_LOCK:
        _BUILDS.discard(build)


@bp.route("/review/leads/<path:lead_id>/similar", methods=["POST"])
@auth.role_required("rep")
def build_similar(lead_id: str) -> Any:
    """Look for leads like this one now (a build that never ran, or failed)."""
    _lead_or_404(lead_id)
    form = PlainForm()
    default = url_for("review.lead", lead_id=lead_id)
    pending = _similar().pending_for_lead(_store(), lead_id)
    failed = _build_all(_similar(), _store(), [c["id"] for c in pending])
    if failed:
        flash("Could not look for leads like this one (the error is logged).", "error")
    elif pending:
        flash("Looked for leads like this one.", "success")
    else:
        flash("Nothing to look for: no reclassify of this lead is waiting for suggestions.", "info")
    return redirect(_safe_next(form.next.data, default))


def _next_suggested(lead_id: str, path: str) -> str | None:
    """Walking a suggestions page: the next open suggestion after ``lead_id`` (or the first)."""
    tail = path.rsplit("/", 1)[-1]
    if not is_prediction_id(tail):
        return None
    ids = [r["lead_id"] for r in _similar().suggestions_in_set(_store(), int(tail), status="open")]
    return _following(ids, lead_id, ids)


def _suggestion_ids(values: list[str]) -> list[int]:
    """The ticked suggestion ids; anything but a whole number is a 400 naming the field."""
    bad = [v for v in values if not is_prediction_id(v)]
    if bad:
        abort(400, description=f"suggestion: not a suggestion id: {', '.join(bad[:5])}")
    return list(dict.fromkeys(int(v) for v in values))


def _suggestions_page(
    correction_id: int, form: Any, status: int = 200, problems: Mapping[int, str] | None = None
) -> Any:
    found = _similar().suggestion_set(_store(), correction_id)
    if found is None:
        abort(404)
    here = url_for("review.suggestions", correction_id=correction_id)
    html = render_template(
        "review/suggestions.html",
        sset=found,
        counts=found.counts(),
        form=form,
        here=here,
        problems=problems or {},
        method_words=_similar().METHODS,
        source_url=url_for("review.lead", lead_id=found.lead_id),
    )
    return html, status


@bp.route("/review/suggestions/<int:correction_id>", methods=["GET", "POST"])
@auth.role_required("rep")
def suggestions(correction_id: int) -> Any:
    """The leads suggested after one reclassify: look, tick, then reclassify or dismiss them.

    Long for its two actions' flashed messages; the writes are ``training.similar``'s.
    """
    similar = _similar()
    form = SuggestionsForm()
    if request.method == "GET":
        return _suggestions_page(correction_id, form)
    ids = _suggestion_ids(request.form.getlist("suggestion"))
    here = url_for("review.suggestions", correction_id=correction_id)
    if not form.validate():
        return _reject(form, None, here)
    if not ids:
        flash("Tick at least one lead first.", "error")
        return redirect(here)
    if len(ids) > _BULK_MAX:
        abort(400, description=f"suggestion: at most {_BULK_MAX} leads at once")
    store = _store()
    try:
        if form.action.data == "accept":
            batch_id = uuid.uuid4().hex
            result = similar.accept_suggestions(
                store,
                correction_id,
                ids,
                reviewer=current_user.name,
                reason=form.reason.data,
                note=_note(form),
                batch_id=batch_id,
            )
            for r in result.corrections:
                _remember(r.lead_id, [r.id])
            n = len(result.corrections)
            _remember_batch(batch_id, "reclassified", n)
            flash(
                f"Reclassified {count_words(n, 'suggested lead')} "
                f"({', '.join(result.lead_ids[:10])}{'…' if n > 10 else ''}). "
                "Undo the whole batch from the bar above the queue.",
                "success",
            )
        else:
            done = similar.dismiss_suggestions(
                store, correction_id, ids, reviewer=current_user.name
            )
            flash(
                f"Dismissed {count_words(len(done), 'suggestion')}; no labels were changed.",
                "success",
            )
    except similar.UnknownSuggestions as exc:
        abort(
            400,
            description="suggestion: unknown id(s) for this correction: "
            + ", ".join(map(str, exc.ids[:10])),
        )
    except similar.StaleSuggestions as exc:
        return _suggestions_page(correction_id, form, status=409, problems=exc.problems)
    return redirect(here)
