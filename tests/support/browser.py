"""The review UI served live for a real Chromium (Playwright, sync API).

Fixtures, named for what a test asks for (import the functions a module uses):
``ui_server`` (``live_ui_server``; module: a werkzeug server on a free port running
the real app with the UI over a store holding the tiny registry's simulated leads,
scored by its champion and partly rescored by the other version), ``browser``
(``chromium_browser``; module) and ``page`` (``browser_page``: a page on the
server that fails the test on a JavaScript error or a CSP violation).
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "CHROMIUM",
    "PASSWORD",
    "RETRAIN_GATE",
    "VIEWPORT",
    "browser_context",
    "browser_login",
    "browser_page",
    "chromium_browser",
    "live_ui_server",
    "no_horizontal_overflow",
    "screens",
]

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "review-loop-pass"
VIEWPORT = {"width": 1440, "height": 900}


#: Opened by the test once the page showed the retrain running (a retrain that takes a while).
RETRAIN_GATE = threading.Event()


def retrain_for_demo(*, store: Any, actor: str, progress: Any) -> dict[str, Any]:
    progress("collecting reps' corrections", 0.3)
    assert RETRAIN_GATE.wait(30), "the test never let the retrain finish"
    progress("training", 0.6)
    return {"version": "3", "base_version": "1", "promoted": False, "gate_reasons": ["no gain"]}


@pytest.fixture(scope="module", name="ui_server")
def live_ui_server(tiny_registry, serve_config, tmp_path_factory):
    """A live server on 127.0.0.1 with the UI, its store, and the base URL."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from werkzeug.serving import make_server

    import review_ui
    from data.store import Store
    from leadready.app import create_app
    from model import registry
    from serve.state import get_state
    from training.record import record_scored_frame

    home = tmp_path_factory.mktemp("browser-home")
    url = f"sqlite:///{home / 'leadready.db'}"
    store = Store(url)
    store.upgrade()
    store.create_user("rita", "rep", PASSWORD)
    store.create_user("ana", "analyst", PASSWORD)

    tiny_registry.configure()
    sim, features = tiny_registry.simulation, tiny_registry.features
    champion, version = registry.load_model(tiny_registry.uri(tiny_registry.champion))
    scored = champion.predict_frame(features, reasons=True)
    earlier = datetime.now(UTC) - timedelta(days=3)
    record_scored_frame(
        store,
        features,
        scored,
        tiny_registry.name,
        str(version),
        leads=sim.leads,
        input_columns=champion.input_columns,
        created_at=earlier - timedelta(days=7),
    )
    other, other_version = registry.load_model(tiny_registry.uri(tiny_registry.other))
    subset = features.iloc[::3]
    record_scored_frame(
        store,
        subset,
        other.predict_frame(subset, reasons=True),
        tiny_registry.name,
        str(other_version),
        input_columns=other.input_columns,
        created_at=earlier,
    )
    events = sim.events.astype(object).where(sim.events.notna(), None)
    store.add_events(events.to_dict("records"))

    app = create_app(
        {
            **serve_config,
            "LEADREADY_HOME": str(home),
            "DATABASE_URL": url,
            "RECORD_PREDICTIONS": False,
            "SECRET_KEY": "browser-test",
            "LEADREADY_RETRAIN": retrain_for_demo,
        }
    )
    review_ui.init_app(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="ui-server", daemon=True)
    thread.start()
    try:
        yield {"base": f"http://127.0.0.1:{server.server_port}", "store": store, "app": app}
    finally:
        server.shutdown()
        thread.join(5)
        state = get_state(app)
        state.close(timeout=2)
        state.store.dispose()
        store.dispose()


@pytest.fixture(scope="module", name="browser")
def chromium_browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture(name="page")
def browser_page(browser, ui_server):
    context = browser.new_context(viewport=VIEWPORT, base_url=ui_server["base"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text) if msg.type == "error" and "403" not in msg.text else None
        ),
    )
    yield page
    context.close()
    assert errors == [], f"JavaScript errors or CSP violations: {errors}"


def screens(tmp_path: Path) -> Path:
    target = os.environ.get("LEADREADY_SCREENSHOTS")
    folder = Path(target) if target else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def browser_login(page, name: str) -> None:
    page.goto("/review/")
    assert "/login" in page.url
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/review/")


def browser_context(browser, ui_server, width: int, height: int, **options: Any):
    return browser.new_context(
        viewport={"width": width, "height": height}, base_url=ui_server["base"], **options
    )


def no_horizontal_overflow(page) -> None:
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth, document.body.scrollWidth]"
    )
    assert widths[0] <= widths[1] and widths[2] <= widths[1], widths
