# ruff: noqa: F811  (the review UI fixtures are imported, then requested by name)
"""Issue #17 in the review UI: sessions end on the server (5), no 500 on odd ids or pages (7).

Reuses the review UI tests' app (a copy of a template SQLite store with users
and six scored leads) and their login helpers.
"""

from __future__ import annotations

import pytest

from tests.support.review_ui import (  # noqa: F401  (fixtures)
    csrf,
    login,
    reclassify,
    rep_client,
    review_app,
    review_client,
    review_store,
    review_template_db,
)


def _copy_of(app, client):
    """A second browser holding a copy of ``client``'s session cookie."""
    name = app.config["SESSION_COOKIE_NAME"]
    client.get("/review/")  # the session cookie is set by a response
    cookie = client.get_cookie(name)
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie(name, cookie.value)
    return thief


def test_5_a_copied_session_cookie_ends_at_logout(app, rep):
    thief = _copy_of(app, rep)
    assert thief.get("/review/").status_code == 200
    assert rep.post("/logout", data={"csrf_token": csrf(rep)}).status_code == 302
    response = thief.get("/review/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("change", ["password", "role"])
def test_5_a_session_ends_when_the_password_or_role_changes(app, rep, store, change):
    thief = _copy_of(app, rep)
    assert thief.get("/review/").status_code == 200
    if change == "password":
        store.set_password("rep1", "a brand new passphrase")
    else:
        store.set_role("rep1", "analyst")
    for browser in (rep, thief):
        response = browser.get("/review/")
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    login(app, rep, "rep1")  # a fresh login works again
    assert rep.get("/review/").status_code == 200


def test_5_logging_in_again_after_logout_still_works(app, client):
    login(app, client, "rep2")
    assert client.post("/logout", data={"csrf_token": csrf(client)}).status_code == 302
    login(app, client, "rep2")
    assert client.get("/review/").status_code == 200


@pytest.mark.parametrize("pid", ["²", "99999999999999999999", "-1"])
def test_7_odd_prediction_ids_are_refused_not_a_500(rep, store, pid):
    response = reclassify(rep, "L2", stage="decision", prediction_id=pid)
    # The form is refused like any invalid form: redirect back with the error flashed.
    assert response.status_code == 302
    assert "not a prediction id" in rep.get(response.headers["Location"]).get_data(as_text=True)
    assert [c for c in store.corrections_for("L2") if c["new_label"] == "decision"] == []


def test_7_a_huge_page_number_is_an_empty_page_not_a_500(rep):
    response = rep.get("/review/?page=999999999999999999")
    assert response.status_code == 200


def test_6_the_ui_answers_a_store_outage_with_a_503_page(app, rep, store, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def down(*args, **kwargs):
        raise OperationalError("SELECT 1", None, Exception("server closed the connection"))

    monkeypatch.setattr(type(store), "get_user", down)
    response = rep.get("/review/", headers={"Accept": "text/html"})
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.mimetype == "text/html" and "unavailable" in response.get_data(as_text=True)
