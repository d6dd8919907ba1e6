"""``leadready demo``: the whole product on embedded defaults, from an empty home.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from data.personal import open_private
from leadready.config import Settings

__all__ = ["demo", "prepare_demo"]

DEMO_USERS = {"rep": "demo-rep", "analyst": "demo-analyst", "admin": "demo-admin"}
DEMO_KEY_NAME = "demo"
#: Columns of the simulated leads table that are not model inputs: the company name
#: identifies a lead rather than describing its buying behaviour.
DEMO_EXCLUDE = ("company",)


def _demo_password(home: Path, name: str) -> str:
    """The demo user's password: made once per home, kept in home/demo-passwords.json (0600)."""
    import secrets

    path = home / "demo-passwords.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if name not in known:
        known[name] = secrets.token_urlsafe(9)
        with open_private(path) as fh:
            json.dump(known, fh, indent=2)
    return known[name]


def _api_key(store: Any, home: Path) -> str:
    """The demo API key: created once; the plaintext is kept in home/demo-api-key (0600)."""
    path = home / "demo-api-key"
    known = {k.name: k for k in store.list_api_keys()}
    if DEMO_KEY_NAME in known and not known[DEMO_KEY_NAME].revoked and path.exists():
        return path.read_text().strip()
    name = f"{DEMO_KEY_NAME}-{len(known)}" if DEMO_KEY_NAME in known else DEMO_KEY_NAME
    key = store.create_api_key(name, role="admin")
    with open_private(path) as fh:
        fh.write(key + "\n")
    return key


def _curl_example(base_url: str, key: str, sim_leads: Any, sim_events: Any) -> str:
    """A ready curl call scoring one simulated lead with its events."""
    lead = sim_leads.iloc[0]
    lead_id = str(lead["lead_id"])
    profile = {"lead_id": lead_id}
    for col in ("job_title", "company", "company_size", "industry", "country", "lead_source"):
        value = lead.get(col)
        if value is not None and value == value:  # skip NaN
            profile[col] = value.item() if hasattr(value, "item") else value
    ev = sim_events[sim_events["lead_id"] == lead_id].tail(5)
    events = []
    for _, row in ev.iterrows():
        item = {"timestamp": row["timestamp"].isoformat(), "type": row["type"]}
        for col in ("page_category", "content_type", "content_topic", "channel"):
            if isinstance(row.get(col), str):
                item[col] = row[col]
        events.append(item)
    as_of = sim_events["timestamp"].max().isoformat()
    body = json.dumps({"lead": profile, "events": events, "as_of": as_of})
    return (
        f"curl -s {base_url}/v1/score \\\n"
        f"  -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
        f"  -d {shlex.quote(body)}"
    )


def prepare_demo(
    settings: Settings,
    *,
    n_leads: int = 20_000,
    seed: int = 1,
    console: Console | None = None,
) -> dict[str, Any]:
    """Make the home ready for the demo; reuse everything that already exists.

    Returns the demo's facts: data paths, champion version, users and passwords,
    the API key and a curl example (for ``base_url`` filled in by the caller).
    """
    from data.store import Store

    console = console or Console()
    home = settings.ensure_home()
    store = Store(settings.database_url)
    store.upgrade()
    data_dir = home / "data"
    leads, events = _demo_data(data_dir, n_leads, seed, console)
    as_of = events["timestamp"].max().to_pydatetime()
    version = _demo_champion(settings, data_dir, as_of, console)
    if store.latest_prediction(str(leads["lead_id"].iloc[0])) is not None:
        console.print("[green]✓[/] store: leads already scored")
    else:
        version = _demo_scores(settings, store, leads, events, as_of, console)
    users = {}
    existing = {u.name for u in store.list_users()}
    for role, name in DEMO_USERS.items():
        password = _demo_password(home, name)
        if name not in existing:
            store.create_user(name, role, password)
        users[name] = {"role": role, "password": password}
    key = _api_key(store, home)
    store.dispose()
    return {
        "data_dir": str(data_dir),
        "version": str(version),
        "users": users,
        "api_key": key,
        "leads": leads,
        "events": events,
    }


def _demo_data(data_dir: Path, n_leads: int, seed: int, console: Console) -> tuple[Any, Any]:
    """The simulated leads and events (simulated once, then reused)."""
    import pandas as pd

    from data.simulate import SimulationConfig, simulate, write

    leads_path, events_path = data_dir / "leads.parquet", data_dir / "events.parquet"
    if leads_path.exists() and events_path.exists():
        console.print(f"[green]✓[/] data: reusing {data_dir}")
    else:
        with console.status(f"Simulating {n_leads:,} leads (seed {seed})…"):
            sim = simulate(SimulationConfig(n_leads=n_leads, seed=seed))
            write(sim, data_dir, fmt="parquet")
        console.print(
            f"[green]✓[/] data: {len(sim.leads):,} leads, {len(sim.events):,} events → {data_dir}"
        )
    return pd.read_parquet(leads_path), pd.read_parquet(events_path)


def _demo_champion(settings: Settings, data_dir: Path, as_of: Any, console: Console) -> Any:
    """The champion's version: the registered one, or one trained on the demo data now."""
    from model import registry

    registry.configure(settings.mlflow_tracking_uri, settings.artifact_root)
    version = registry.alias_version(settings.model_name, "champion")
    if version is not None:
        console.print(f"[green]✓[/] model: reusing {settings.model_name} v{version} (champion)")
        return version
    from training.train import TrainConfig, train

    result = train(
        TrainConfig(
            leads_path=data_dir / "leads.parquet",
            events_path=data_dir / "events.parquet",
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_root=settings.artifact_root,
            id_col="lead_id",
            stage_col="stage",
            persona_col="persona",
            exclude=DEMO_EXCLUDE,
            as_of=as_of,
            model_name=settings.model_name,
            actor="leadready demo",
            run_name="demo",
        ),
        console=console,
    )
    version = registry.alias_version(settings.model_name, "champion") or result.version
    console.print(f"[green]✓[/] model: trained and registered v{version} as champion")
    return version


def _demo_scores(
    settings: Settings, store: Any, leads: Any, events: Any, as_of: Any, console: Console
) -> Any:
    """Score every lead into the store with the champion, so the review queue has work."""
    from model import registry
    from model.features import build_features
    from training.record import record_scored_frame

    lead_model, version = registry.load_model(f"models:/{settings.model_name}@champion")
    with console.status("Scoring every lead into the store…"):
        chunk = 5_000
        for start in range(0, len(leads), chunk):
            part = leads.iloc[start : start + chunk]
            ids = set(part["lead_id"])
            feats = build_features(
                part.drop(columns=["stage", "persona"]),
                events[events["lead_id"].isin(ids)],
                as_of=as_of,
                config=lead_model.feature_config,
                exclude=DEMO_EXCLUDE,
            )
            scored = lead_model.predict_frame(feats, reasons=True)
            record_scored_frame(
                store, feats, scored, settings.model_name, str(version), source="batch", leads=part
            )
        # Events after their leads: the store keeps no event of an unknown lead.
        store.add_events(events.to_dict("records"))
    console.print(f"[green]✓[/] store: {len(leads):,} leads scored by v{version}")
    return version


@click.command()
@click.option("--leads", "n_leads", default=20_000, show_default=True, help="Leads to simulate.")
@click.option("--seed", default=1, show_default=True, help="Simulator seed.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Prepare everything, print it, and stop.")
def demo(n_leads: int, seed: int, host: str, port: int, workers: int, no_serve: bool) -> None:
    """Simulate, train, create demo users and a key, then serve API + review UI.

    On an empty LEADREADY_HOME everything is made; a second run reuses it.
    """
    console = Console()
    settings = Settings.from_env()
    try:
        facts = prepare_demo(settings, n_leads=n_leads, seed=seed, console=console)
    except (ValueError, KeyError) as exc:  # data.readers.InputError is a ValueError
        raise click.ClickException(str(exc)) from exc
    base_url = f"http://{host}:{port}"
    console.rule("leadready demo")
    console.print(f"home:        {settings.home}")
    console.print(f"champion:    {settings.model_name} v{facts['version']}")
    console.print(f"review UI:   {base_url}/review/")
    for name, info in facts["users"].items():
        console.print(f"  {info['role']:<8} {name} / {info['password']}")
    console.print(f"API key:     {facts['api_key']}")
    console.print(f"MLflow UI:   mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}")
    console.print("\nScore a lead:\n")
    click.echo(_curl_example(base_url, facts["api_key"], facts["leads"], facts["events"]))
    click.echo("")
    if no_serve:
        return
    from leadready.server import ServeOptions, run

    console.print(f"Serving on {base_url} (Ctrl-C stops)…")
    run(ServeOptions(host=host, port=port, workers=workers), settings)
