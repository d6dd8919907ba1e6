"""Issue #17: each finding of the outside test, reproduced as written, on SQLite and PostgreSQL.

Every test here failed before its fix. ``rel`` builds an app on a fresh store of
each backend (``db_url``) that serves the session's tiny champion without
reloading it (``MODEL_SOURCE`` hands over the already loaded model).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from data.store import Store
from serve.state import get_state
from tests.support.api import lead_request


@dataclass
class Rel:
    app: Any
    client: Any
    store: Store
    headers: dict[str, str]
    sim: Any
    as_of: Any
    swapped: threading.Event

    def score(
        self, lead_id: str | None = None, index: int = 0, max_events: int | None = None, **lead: Any
    ) -> Any:
        body = lead_request(self.sim, index, lead_id=lead_id or _new_id(), as_of=self.as_of)
        body["lead"].update(lead)
        if max_events is not None:
            body["events"] = body["events"][:max_events]
        return self.client.post("/v1/score", json=body, headers=self.headers)

    def flush(self) -> None:
        assert get_state(self.app).writer.flush(timeout=20)


def _new_id() -> str:
    return f"rel-{uuid.uuid4().hex[:8]}"


def source_of(api_app) -> tuple[Any, Any]:
    """A ``MODEL_SOURCE`` serving the model ``api_app`` already loaded (no MLflow load)."""
    loaded = get_state(api_app).holder.current
    return (
        lambda uri: (loaded.model, loaded.pyfunc, loaded.version),
        lambda name, alias: loaded.version,
    )


def make_rel(
    db_url: str,
    api_app,
    serve_config,
    tiny_registry,
    tmp_path,
    key: str | None = None,
    **config: Any,
) -> Rel:
    from leadready.app import create_app

    store = Store(db_url)
    if key is None:
        store.upgrade()
        key = store.create_api_key(f"crm-{uuid.uuid4().hex[:6]}", "client")
    cfg = {
        **serve_config,
        "LEADREADY_HOME": str(tmp_path / "home"),
        "DATABASE_URL": db_url,
        "MODEL_SOURCE": source_of(api_app),
        **config,
    }
    app = create_app(cfg)
    state = get_state(app)
    swapped = threading.Event()  # listeners run in order: the app's ran before this one
    state.holder.on_swap(lambda new, old: swapped.set())
    state.holder.start()
    assert state.holder.wait_ready(30), state.holder.last_error
    return Rel(
        app=app,
        client=app.test_client(),
        store=store,
        headers={"Authorization": f"Bearer {key}"},
        sim=tiny_registry.simulation,
        as_of=tiny_registry.as_of,
        swapped=swapped,
    )


@pytest.fixture
def rel(db_url, api_app, serve_config, tiny_registry, tmp_path):
    r = make_rel(db_url, api_app, serve_config, tiny_registry, tmp_path)
    yield r
    state = get_state(r.app)
    state.close()
    state.store.dispose()
    r.store.dispose()


# -- 1. NUL bytes ------------------------------------------------------------------------------


def test_1_nul_in_a_score_request_is_a_400_and_the_writer_keeps_going(rel):
    response = rel.score(lead_id="PGNUL1", company="nul\u0000byte")
    assert response.status_code == 400
    assert response.json["error"]["field"] == "lead.company"
    assert "NUL" in response.json["error"]["message"]
    lone = rel.score(company="half \ud800 pair")
    assert lone.status_code == 400 and lone.json["error"]["field"] == "lead.company"
    ok_ids = [_new_id() for _ in range(5)]
    for lead_id in ok_ids:
        assert rel.score(lead_id=lead_id).status_code == 200
    rel.flush()
    assert rel.store.get_lead("PGNUL1") is None
    assert all(rel.store.latest_prediction(i) is not None for i in ok_ids)


def test_1_nul_in_a_batch_names_the_item_field(rel):
    body = lead_request(rel.sim, 0, lead_id=_new_id(), as_of=rel.as_of)
    body["events"][0]["channel"] = "e\u0000mail"
    response = rel.client.post("/v1/score/batch", json={"leads": [body]}, headers=rel.headers)
    assert response.status_code == 400
    assert response.json["error"]["field"] == "leads[0].events[0].channel"


def test_1_nul_in_corrections_search_and_ids_is_a_400_never_a_500(rel):
    lead_id = _new_id()
    assert rel.score(lead_id=lead_id).status_code == 200
    rel.flush()
    url = f"/v1/leads/{lead_id}/corrections"
    bad = rel.client.post(
        url, json={"stage": "decision", "reviewer": "crm", "note": "x\u0000y"}, headers=rel.headers
    )
    assert bad.status_code == 400 and bad.json["error"]["field"] == "note"
    search = rel.client.get("/v1/review/queue?search=a%00b", headers=rel.headers)
    assert search.status_code == 400 and search.json["error"]["field"] == "search"
    by_id = rel.client.get("/v1/leads/a%00b/corrections", headers=rel.headers)
    assert by_id.status_code == 400 and by_id.json["error"]["field"] == "lead_id"
    page = rel.client.get("/review/leads/a%00b", headers={"Accept": "text/html"})
    assert page.status_code == 400 and page.mimetype == "text/html"
    assert rel.store.corrections_for(lead_id) == []


def test_1_the_store_refuses_nul_on_every_backend(db_url):
    with Store(db_url) as store:
        store.upgrade()
        with pytest.raises(ValueError, match="company: contains a NUL"):
            store.upsert_leads([{"lead_id": "n1", "company": "a\x00b"}])
        with pytest.raises(ValueError, match="NUL"):
            store.upsert_leads([{"lead_id": "n\x00"}])
        with pytest.raises(ValueError, match="search: contains a NUL"):
            store.search_leads("a\x00b")
        store.upsert_leads([{"lead_id": "abc", "company": "abc"}])
        assert store.search_leads("a") and store.get_lead("n1") is None


def test_1_a_row_past_the_door_is_isolated_by_the_writer_not_retried_forever(rel):
    """The writer itself: one unstorable row among good ones, written straight to it."""
    writer = get_state(rel.app).writer
    good = [{"lead_id": _new_id(), "company": "ok"} for _ in range(20)]
    writer.submit(leads=[*good[:10], {"lead_id": "PGNUL2", "company": "nul\x00"}, *good[10:]])
    rel.flush()
    assert writer.backlog == 0
    assert all(rel.store.get_lead(r["lead_id"]) is not None for r in good)
    assert rel.store.get_lead("PGNUL2") is None


# -- 2. writer back-pressure -------------------------------------------------------------------


def test_2_too_many_events_in_one_request_is_a_413_before_anything_is_stored(
    db_url, api_app, serve_config, tiny_registry, tmp_path
):
    r = make_rel(db_url, api_app, serve_config, tiny_registry, tmp_path, MAX_EVENTS_PER_REQUEST=5)
    try:
        lead_id = _new_id()
        body = lead_request(r.sim, 0, lead_id=lead_id, as_of=r.as_of)
        event = (
            body["events"][0]
            if body["events"]
            else {"type": "page_view", "timestamp": "2024-01-01T00:00:00Z"}
        )
        body["events"] = [event] * 6
        response = r.client.post("/v1/score", json=body, headers=r.headers)
        assert response.status_code == 413 and response.json["error"]["field"] == "events"
        batch = r.client.post("/v1/score/batch", json={"leads": [body]}, headers=r.headers)
        assert batch.status_code == 413 and batch.json["error"]["field"] == "leads"
        r.flush()
        assert r.store.get_lead(lead_id) is None
    finally:
        get_state(r.app).close()
        r.store.dispose()


def test_2_a_full_writer_answers_503_with_retry_after_and_loses_nothing_acknowledged(
    db_url, api_app, serve_config, tiny_registry, tmp_path
):
    r = make_rel(
        db_url,
        api_app,
        serve_config,
        tiny_registry,
        tmp_path,
        WRITER_MAX_PENDING=40,
        WRITER_FLUSH_SECONDS=3600,
        WRITER_BATCH_SIZE=10_000,
    )
    try:
        acknowledged, refused = [], 0
        for index in range(24):
            lead_id = _new_id()
            response = r.score(lead_id=lead_id, index=index, max_events=0)
            if response.status_code == 200:
                acknowledged.append(lead_id)
            else:
                assert response.status_code == 503
                assert response.headers["Retry-After"]
                refused += 1
        assert acknowledged and refused
        r.flush()
        assert all(r.store.latest_prediction(i) is not None for i in acknowledged)
        assert len(acknowledged) == 20  # 2 rows (lead, prediction) each, 40 at most
        assert r.score(index=0, max_events=0).status_code == 200  # room again once written
    finally:
        get_state(r.app).close()
        r.store.dispose()


# -- 3. labels checked while no model is loaded ------------------------------------------------


def _unloaded_app(db_url, serve_config, tmp_path):
    """An app whose model never finishes loading (the ~10 s after a restart, held open)."""
    from leadready.app import create_app

    gate = threading.Event()

    def loader(uri):
        gate.wait(30)
        raise RuntimeError("still loading")

    store = Store(db_url)
    store.upgrade()
    key = store.create_api_key("crm", "client")
    store.upsert_leads([{"lead_id": "L000050", "company": "Acme"}])
    app = create_app(
        {
            **serve_config,
            "LEADREADY_HOME": str(tmp_path / "home"),
            "DATABASE_URL": db_url,
            "MODEL_SOURCE": (loader, lambda name, alias: "1"),
        }
    )
    return app, store, {"Authorization": f"Bearer {key}"}, gate


def test_3_without_a_model_or_known_labels_a_correction_is_503_and_nothing_stored(
    db_url, serve_config, tmp_path
):
    app, store, headers, gate = _unloaded_app(db_url, serve_config, tmp_path)
    try:
        body = {"stage": "<b>bogus-stage</b>", "persona": "cfo-typo", "reviewer": "crm"}
        response = app.test_client().post(
            "/v1/leads/L000050/corrections", json=body, headers=headers
        )
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert store.corrections_for("L000050") == []
    finally:
        gate.set()
        get_state(app).close()
        store.dispose()


def test_3_while_no_model_is_loaded_labels_are_checked_against_the_last_loaded_one(
    db_url, serve_config, tmp_path, api_app
):
    app, store, headers, gate = _unloaded_app(db_url, serve_config, tmp_path)
    try:
        loaded = get_state(api_app).holder.current
        stages = list(loaded.model.stage_labels)
        state = get_state(app)
        # What every load records (the app's on_swap listener), as a previous process left it.
        state.labels.save(state.holder.name, "1", {"stage": stages, "persona": None})
        client = app.test_client()
        bogus = {"stage": "<b>bogus-stage</b>", "reviewer": "crm"}
        response = client.post("/v1/leads/L000050/corrections", json=bogus, headers=headers)
        assert response.status_code == 400 and response.json["error"]["field"] == "stage"
        assert state.holder.current is None
        good = {"stage": stages[0], "reviewer": "crm"}
        response = client.post("/v1/leads/L000050/corrections", json=good, headers=headers)
        assert response.status_code == 201
        assert [c["new_label"] for c in store.corrections_for("L000050")] == [stages[0]]
    finally:
        gate.set()
        get_state(app).close()
        store.dispose()


def test_3_every_load_records_the_label_sets(rel, api_app):
    state = get_state(rel.app)
    assert rel.swapped.wait(30)
    book = state.labels.load(state.holder.name)
    loaded = get_state(api_app).holder.current
    assert book is not None
    assert book["stage"] == tuple(loaded.model.stage_labels)


# -- 6. database outage ------------------------------------------------------------------------


def test_6_a_read_only_store_gives_503_with_retry_after_not_500(
    tmp_path, api_app, serve_config, tiny_registry
):
    path = tmp_path / "ro.db"
    r = make_rel(f"sqlite:///{path}", api_app, serve_config, tiny_registry, tmp_path)
    lead_id = _new_id()
    assert r.score(lead_id=lead_id).status_code == 200
    r.flush()
    get_state(r.app).close()
    r.store.dispose()
    ro = make_rel(
        f"sqlite:///file:{path}?mode=ro&uri=true",
        api_app,
        serve_config,
        tiny_registry,
        tmp_path / "ro",
        key=r.headers["Authorization"].split()[1],
    )
    try:
        stages = list(get_state(api_app).holder.current.model.stage_labels)
        response = ro.client.post(
            f"/v1/leads/{lead_id}/corrections",
            json={"stage": stages[0], "reviewer": "crm"},
            headers=ro.headers,
        )
        assert response.status_code == 503 and response.headers["Retry-After"]
    finally:
        get_state(ro.app).close()


# -- fault injection: a TCP proxy between the service and PostgreSQL ---------------------------


@pytest.mark.slow
def test_fault_injection_cut_delay_reset_loses_nothing_acknowledged_and_never_500s(
    pg_url, api_app, serve_config, tiny_registry, tmp_path
):
    """Scores and corrections stream while the proxy delays, resets and cuts PostgreSQL.

    Asserts: only 200/201 or 503 + Retry-After (never 500); every acknowledged
    prediction and correction is in the store afterwards; ``/readyz`` is 503
    while the store is cut and 200 once it is back. Each phase is a fixed
    number of requests (bounded), and the proxy's controls return once applied.
    """
    from collections import Counter

    from sqlalchemy.engine import make_url

    from tests.faultproxy import FaultProxy

    target = make_url(pg_url)
    with FaultProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        proxied = target.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
        r = make_rel(proxied, api_app, serve_config, tiny_registry, tmp_path)
        stages = list(get_state(api_app).holder.current.model.stage_labels)
        try:
            base = _new_id()
            assert r.score(lead_id=base).status_code == 200
            r.flush()
            scored: list[str] = []
            corrected: list[str] = []
            statuses: Counter[int] = Counter()

            def step(i: int) -> None:
                lead_id = _new_id()
                response = r.score(lead_id=lead_id, index=i % 20, max_events=3)
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    scored.append(lead_id)
                else:
                    assert response.status_code == 503, response.json
                    assert response.headers.get("Retry-After")
                note = f"fault-{i}"
                body = {"stage": stages[i % len(stages)], "reviewer": "crm", "note": note}
                response = r.client.post(
                    f"/v1/leads/{base}/corrections", json=body, headers=r.headers
                )
                statuses[response.status_code] += 1
                if response.status_code == 201:
                    corrected.append(note)
                else:
                    assert response.status_code == 503, response.json
                    assert response.headers.get("Retry-After")

            for i in range(5):
                step(i)
            proxy.delay(0.05)
            for i in range(5, 10):
                step(i)
            proxy.restore()
            for i in range(10, 20):
                if i % 3 == 0:
                    proxy.reset()
                step(i)
            proxy.cut()
            ready = r.client.get("/readyz")
            assert ready.status_code == 503 and ready.json["store"] == "unavailable"
            assert ready.headers.get("Retry-After")
            for i in range(20, 30):
                step(i)
            cut_statuses = Counter(statuses)
            proxy.restore()
            ready = r.client.get("/readyz")
            assert ready.status_code == 200 and ready.json["store"] == "ok"
            for i in range(30, 35):
                step(i)
            r.flush()

            assert set(statuses) <= {200, 201, 503}, statuses
            assert cut_statuses[503] >= 10  # corrections during the cut
            assert cut_statuses[200] >= 10  # scoring went on with keys already seen
            missing = [i for i in scored if r.store.latest_prediction(i) is None]
            assert missing == []
            notes = {c["note"] for c in r.store.corrections_for(base)}
            assert set(corrected) <= notes
            assert get_state(r.app).writer.backlog == 0
        finally:
            get_state(r.app).close()
            r.store.dispose()


# -- 4. API corrections attributed to the key --------------------------------------------------


def test_4_an_api_correction_is_the_keys_and_never_a_reps(rel, api_app):
    rel.store.create_user("demo-rep", "rep", "a long enough password")
    lead_id = _new_id()
    assert rel.score(lead_id=lead_id).status_code == 200
    rel.flush()
    stage = get_state(api_app).holder.current.model.stage_labels[0]
    response = rel.client.post(
        f"/v1/leads/{lead_id}/corrections",
        json={"stage": stage, "reviewer": "demo-rep"},
        headers=rel.headers,
    )
    assert response.status_code == 201
    [row] = rel.store.corrections_for(lead_id)
    assert row["reviewer"] == "ext:demo-rep" and row["api_key"].startswith("crm-")
    assert row["reviewer"] != "demo-rep"  # not counted as, nor undone by, the rep
    frame = rel.store.corrections_frame()
    assert "demo-rep" not in set(frame["reviewer"])


# -- 7. remaining 500s -------------------------------------------------------------------------


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_7_out_of_range_timestamps_are_400_and_fail_only_their_batch_item(
    api_client, api_headers, tiny_registry, ts
):
    sim, as_of = tiny_registry.simulation, tiny_registry.as_of
    for field in ("lead.created_at", "events[0].timestamp", "as_of"):
        body = lead_request(sim, 0, lead_id=_new_id(), as_of=as_of)
        if field == "lead.created_at":
            body["lead"]["created_at"] = ts
        elif field == "as_of":
            body["as_of"] = ts
        else:
            body["events"] = [{"type": "page_view", "timestamp": ts}]
        one = api_client.post("/v1/score", json=body, headers=api_headers["client"])
        assert one.status_code == 400 and one.json["error"]["field"] == field
        good = lead_request(sim, 1, lead_id=_new_id(), as_of=as_of)
        batch = api_client.post(
            "/v1/score/batch", json={"leads": [body, good]}, headers=api_headers["client"]
        )
        assert batch.status_code == 200
        assert (batch.json["scored"], batch.json["failed"]) == (1, 1)


def test_7_deeply_nested_invocations_are_a_400(api_client, api_headers):
    body = '{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = api_client.post(
        "/invocations",
        data=body,
        headers={**api_headers["client"], "Content-Type": "application/json"},
    )
    assert response.status_code == 400


# -- 11. /invocations refuses unknown columns ---------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_records": [{"bogus": 1}]},
        {"dataframe_split": {"columns": ["bogus"], "data": [[1]]}},
        {"inputs": [{"bogus": 1}]},
    ],
)
def test_11_invocations_reject_unknown_columns_naming_them(api_client, api_headers, body):
    response = api_client.post("/invocations", json=body, headers=api_headers["client"])
    assert response.status_code == 400
    assert response.json["error"]["field"] == "bogus" and "bogus" in response.json["message"]


def test_11_known_columns_and_lead_id_still_score(api_client, api_headers, tiny_registry):
    row = tiny_registry.features.iloc[0].to_dict()
    row = {k: (None if v != v else v) for k, v in row.items()}
    row["lead_id"] = _new_id()
    response = api_client.post(
        "/invocations", json={"dataframe_records": [row]}, headers=api_headers["client"]
    )
    assert response.status_code == 200, response.json


# -- 12. file mode, look-alike names -------------------------------------------------------------


def test_12_the_sqlite_store_is_created_private(tmp_path):
    path = tmp_path / "home" / "leadready.db"
    with Store(f"sqlite:///{path}") as store:
        store.upgrade()
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "name",
    [
        "demo\u2011rep",
        "d\u0435mo-rep",
        "Demo-Rep",
        "demo\u200b-rep",
        "\uff44emo-rep",
        "ext:demo-rep",
    ],
)
def test_12_look_alike_user_names_are_refused(db_url, name):
    with Store(db_url) as store:
        store.upgrade()
        store.create_user("demo-rep", "rep", "a long enough password")
        with pytest.raises(ValueError, match="user name"):
            store.create_user(name, "rep", "a long enough password")
        assert [u.name for u in store.list_users()] == ["demo-rep"]


# -- 9. spreadsheet formulas in the corrections export -----------------------------------------


def test_9_export_neutralises_formula_cells_and_says_so(db_url, tmp_path):
    import csv

    from training.corrections import export_corrections

    with Store(db_url) as store:
        store.upgrade()
        store.upsert_leads([{"lead_id": "F1"}])
        store.add_correction(
            "F1", "stage", "decision", reviewer='=HYPERLINK("http://x.invalid","hi")', source="api"
        )
        store.add_correction(
            "F1", "stage", "awareness", reviewer="ana", note="=cmd|' /C calc'!A0", source="ui"
        )
        store.add_correction("F1", "stage", "decision", reviewer="ana", note="@SUM(1)\tx")
        counts: list[int] = []
        path, n = export_corrections(store, tmp_path / "c.csv", on_neutralised=counts.append)
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert n == 3 and counts == [3]
    assert rows[0]["reviewer"] == '\'=HYPERLINK("http://x.invalid","hi")'
    assert rows[1]["note"] == "'=cmd|' /C calc'!A0"
    assert rows[2]["note"] == "'@SUM(1)\tx"
    assert rows[1]["reviewer"] == "ana"  # plain text untouched


# -- 10. ids with a slash ----------------------------------------------------------------------


def test_10_a_lead_id_with_a_slash_is_routable_in_the_api_and_the_ui(rel, api_app):
    lead_id = f"acme/{_new_id()}"
    assert rel.score(lead_id=lead_id).status_code == 200
    rel.flush()
    url = f"/v1/leads/{lead_id}/corrections"
    stage = get_state(api_app).holder.current.model.stage_labels[0]
    response = rel.client.post(url, json={"stage": stage, "reviewer": "crm"}, headers=rel.headers)
    assert response.status_code == 201, response.json
    history = rel.client.get(url, headers=rel.headers)
    assert history.status_code == 200 and history.json["lead_id"] == lead_id
    with rel.app.test_request_context():
        from flask import url_for

        page = url_for("review.lead", lead_id=lead_id)
        assert page == f"/review/leads/{lead_id}"
        adapter = rel.app.url_map.bind("localhost")
        assert adapter.match(page) == ("review.lead", {"lead_id": lead_id})
        assert adapter.match(f"{page}/confirm", method="POST") == (
            "review.confirm",
            {"lead_id": lead_id},
        )


# -- 8. events stored once however often a history is re-sent ----------------------------------


def test_8_a_resent_history_is_stored_once_across_processes(db_url):
    from datetime import UTC, datetime

    from serve.writer import EventDeduper

    ts = datetime(2024, 5, 1, tzinfo=UTC)
    history = [
        {"lead_id": "E1", "timestamp": ts, "type": "page_view", "page_category": "pricing"},
        {"lead_id": "E1", "timestamp": ts, "type": "email_open"},
        {"lead_id": "E1", "timestamp": ts, "type": "demo_request", "event_id": "crm-42"},
    ]
    with Store(db_url) as store:
        store.upgrade()
        store.upsert_leads([{"lead_id": "E1"}])
        # Three "processes", each with its own per-process de-duplication, 8 sends in all.
        processes = [EventDeduper(store.add_events) for _ in range(3)]
        for send in range(8):
            processes[send % 3]([dict(e) for e in history])
        store.add_events([dict(e) for e in history] * 2)  # and a bulk import, twice
        stored = store.events_for("E1")
        assert len(stored) == 3
        # The client's own key wins: same content under another key is another event.
        store.add_events([{**history[2], "event_id": "crm-43"}])
        assert len(store.events_for("E1")) == 4


def test_8_the_api_takes_a_client_event_id(rel):
    lead_id = _new_id()
    body = lead_request(rel.sim, 0, lead_id=lead_id, as_of=rel.as_of)
    body["events"] = [{"type": "page_view", "timestamp": "2024-05-01T00:00:00Z", "event_id": "k1"}]
    for _ in range(3):
        assert rel.client.post("/v1/score", json=body, headers=rel.headers).status_code == 200
    rel.flush()
    assert len(rel.store.events_for(lead_id)) == 1


def test_12_guessing_cannot_lock_a_colleague_out_and_the_delay_grows(tmp_path, caplog):
    from review_ui.auth import LoginLimiter

    now = [1000.0]
    limiter = LoginLimiter(
        tmp_path / "login.db", max_per_user=5, window_seconds=900, clock=lambda: now[0]
    )
    with caplog.at_level("WARNING", logger="review_ui.auth"):
        for _ in range(5):
            limiter.failed("demo-rep", "203.0.113.7")  # the guesser
    assert "demo-rep" in caplog.text and "203.0.113.7" in caplog.text  # the admins' notice
    assert limiter.retry_after("demo-rep", "198.51.100.4") == 0  # the rep herself
    assert limiter.retry_after("demo-rep", "203.0.113.7") == 30
    waits = []
    for _ in range(4):
        now[0] += limiter.retry_after("demo-rep", "203.0.113.7")
        limiter.failed("demo-rep", "203.0.113.7")
        waits.append(limiter.retry_after("demo-rep", "203.0.113.7"))
    assert waits == [60, 120, 240, 480]


def test_6_keys_already_seen_survive_an_outage_for_a_bounded_time_unknown_keys_get_503():
    from types import SimpleNamespace

    from sqlalchemy.exc import OperationalError

    from serve.auth import ApiKeyAuth
    from serve.errors import ApiError

    class FlakyStore:
        down = False

        def verify_api_key(self, token):
            if self.down:
                raise OperationalError("SELECT", None, Exception("connection refused"))
            return SimpleNamespace(name=f"key-{token}", role="client", revoked=token == "gone")

    now = [0.0]
    store = FlakyStore()
    auth = ApiKeyAuth(store, cache_seconds=1, known_seconds=60, clock=lambda: now[0])
    assert auth.authenticate("Bearer seen", "api_key").name == "key-seen"
    store.down = True
    now[0] = 30.0
    assert auth.authenticate("Bearer seen", "api_key").name == "key-seen"  # from the known keys
    with pytest.raises(ApiError) as unknown:
        auth.authenticate("Bearer never-seen", "api_key")
    assert unknown.value.status == 503 and unknown.value.headers["Retry-After"]
    now[0] = 61.0
    with pytest.raises(ApiError) as stale:
        auth.authenticate("Bearer seen", "api_key")
    assert stale.value.status == 503
    store.down = False
    with pytest.raises(ApiError) as revoked:
        auth.authenticate("Bearer gone", "api_key")  # revocation as soon as the store answers
    assert revoked.value.status == 403
