"""Commands as users run them: whole-process wall and CPU time, next to MLflow's own command.

``python -m bench.commands`` writes ``bench/results/commands.json`` and the start-up
import table ``bench/results/importtime.md``.

Every figure is one ``leadready …`` process started from a shell's point of view
(``subprocess.run``; wall from start to exit, CPU = user + system of the process
and its children), run the way CI runs it (``PYTHONDONTWRITEBYTECODE=1``, so a
venv without compiled bytecode pays for compiling on every run):

* ``score`` of 1 lead (with its events), of 100k and of 1M simulated leads with
  their events (Parquet in, Parquet out);
* ``promote`` and ``rollback`` (alternating: promote version 2, roll back to 1),
  ``queue --top 20``, ``corrections import`` of a 100-row CSV; ``score`` of 1
  lead and ``corrections import`` are timed twice a round: first right after the
  champion moved (resolved through MLflow), then with the champion unchanged
  (resolved once and kept, ``model.model_cache``: no MLflow import);
* ``mlflow models predict`` (``--env-manager local``) of the same registered
  model on the same leads' ready feature rows (CSV), alternating with
  ``leadready score`` on those leads (A B A B). MLflow's command is run on at
  most ``--mlflow-rows`` leads (default 100,000: a million take it minutes); the
  comparison is in leads per second.

``promote``, ``rollback`` and the first ``score``/``corrections import`` after a
champion move are also timed against an ``mlflow server`` on the same registry
(``--tracking-server``, on by default): the deployment ``docs/deploy.md``
recommends, where a command talks to MLflow over HTTP instead of opening its SQL
store in-process (about a second of CPU a command on this machine).

It works on a private copy of the demo champion's home (``bench.serving``), with
a second registered version of the same model so ``promote`` and ``rollback``
have something to move; simulated tables are cached under the system temp
folder by size. The load average is recorded next to each figure: on a busy
machine wall times are inflated, CPU times much less.

MLflow's own floor is measured beside them (``mlflow_floor``): whole ``python -c``
processes that only ``import mlflow``, import its client, and open the client and read
the champion alias from the same SQLite registry — what any command that talks to the
registry pays before any of our code.

The import table runs each short command once under ``python -X importtime``
and lists, per command, the time of the top-level imports by package and
whether scikit-learn's metrics, SciPy's stats or ``training.evaluate`` were
imported (a command that evaluates nothing should not).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import summary, write_result
from bench.serving import champion_home

__all__ = ["importtime_table", "main", "parse_importtime", "run", "summary_rows"]

#: Targets on 2 cores (wall of the whole process).
TARGET_SHORT_S = 2.0
TARGET_LEADS_PER_S = 20_000
TARGET_VS_MLFLOW = 5.0
MODEL = "lead-readiness"
#: Packages the import table sums (top-level name of each import).
PACKAGES = (
    "mlflow",
    "sklearn",
    "scipy",
    "lightgbm",
    "pandas",
    "pyarrow",
    "numpy",
    "sqlalchemy",
    "alembic",
    "rich",
    "click",
)
#: Modules whose presence the import table reports.
WATCH = (
    "mlflow",
    "sklearn",
    "scipy",
    "sklearn.metrics",
    "scipy.stats",
    "training.evaluate",
    "lightgbm",
)
SEED = 11
_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)$")


# --------------------------------------------------------------------------- running


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "LEADREADY_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
    )
    env.pop("DATABASE_URL", None)
    return env


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/health")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


@contextlib.contextmanager
def tracking_server(home: Path, *, timeout: float = 120.0):
    """An ``mlflow server`` on 127.0.0.1 over the home's registry; yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(home / "mlflow-server.log", "w")  # noqa: SIM115 - closed below
    argv = [
        _bin("mlflow"), "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    server = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, cwd=home, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start; see {home / 'mlflow-server.log'}")
            time.sleep(0.25)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def timed(argv: list[str], env: dict[str, str], *, ok: tuple[int, ...] = (0,)) -> dict[str, float]:
    """Run one command; its wall seconds, CPU seconds (user + system) and the load average."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in ok:
        tail = proc.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "load": load}


def refit_log_lines(home: Path) -> int:
    """Lines in the log of background queue refits (one summary line per refit)."""
    log = home / "logs" / "queue-refit.log"
    return log.read_text().count("\n") if log.exists() else 0


def background_refit(home: Path, lines: int, timeout: float = 600.0) -> dict[str, float]:
    """Wait for the queue refit an import started in the background (its summary line
    lands in the log after ``lines``), so it does not run beside the next command timed;
    its wall time from the import's end, and the load average."""
    log = home / "logs" / "queue-refit.log"
    load = os.getloadavg()[0]
    start = time.perf_counter()
    while not (log.exists() and log.read_text().count("\n") > lines):
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"no queue refit finished in {timeout:.0f} s ({log})")
        time.sleep(0.05)
    return {"wall": time.perf_counter() - start, "load": load}


def _figures(samples: list[dict[str, float]], **extra: Any) -> dict[str, Any]:
    return {
        "wall": summary([s["wall"] for s in samples]),
        "cpu": summary([s["cpu"] for s in samples]),
        "load": summary([s["load"] for s in samples]),
        **extra,
    }


# --------------------------------------------------------------------------- inputs


def private_home(root: Path) -> Path:
    """A copy of the demo champion's home with a second version of its model."""
    source, _ = champion_home()
    home = root / "home"
    shutil.copytree(source, home, ignore=shutil.ignore_patterns("*.db-shm", "*.db-wal"))
    from mlflow import MlflowClient

    from model.registry import configure

    configure(f"sqlite:///{home / 'mlflow.db'}")  # the source of a version is looked up there
    client = MlflowClient()
    first = client.get_model_version(MODEL, "1")
    client.create_model_version(MODEL, first.source, run_id=first.run_id)
    return home


def simulated(n_leads: int, cache: Path) -> Path:
    """``leadready simulate --leads N`` (Parquet), made once per size."""
    folder = cache / f"leads-{n_leads}-seed{SEED}"
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [_bin("leadready"), "simulate", "--leads", str(n_leads), "--seed", str(SEED)]
        + ["--out", str(folder), "--format", "parquet"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (folder / "done").write_text("")
    return folder


def one_lead(data: Path, out: Path) -> tuple[Path, Path]:
    """The first lead of a simulated table and its events, as CSV."""
    import pandas as pd

    leads = pd.read_parquet(data / "leads.parquet").head(1)
    events = pd.read_parquet(data / "events.parquet")
    events = events[events["lead_id"].astype(str) == str(leads["lead_id"].iloc[0])]
    leads.to_csv(out / "one.csv", index=False)
    events.to_csv(out / "one_events.csv", index=False)
    return out / "one.csv", out / "one_events.csv"


def corrections_csv(home: Path, out: Path, rows: int = 100, shift: int = 0) -> Path:
    """``rows`` corrections of scored leads, as a CRM export would hold them; each
    ``shift`` moves every lead to other labels, so each file's rows are new corrections."""
    import sqlalchemy as sa

    from data.schema import CORRECTION_REASONS, DEFAULT_PERSONAS, DEFAULT_STAGES

    engine = sa.create_engine(f"sqlite:///{home / 'leadready.db'}")
    with engine.connect() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                sa.text("SELECT DISTINCT lead_id FROM predictions ORDER BY lead_id LIMIT :n"),
                {"n": rows},
            )
        ]
    engine.dispose()
    path = out / f"corrections-{shift}.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["lead_id", "stage", "persona", "reviewer", "reason", "note"])
        for i, lead in enumerate(ids):
            writer.writerow(
                [
                    lead,
                    DEFAULT_STAGES[(i + shift) % len(DEFAULT_STAGES)],
                    DEFAULT_PERSONAS[(i + shift) % len(DEFAULT_PERSONAS)],
                    "bench@example.com",
                    CORRECTION_REASONS[i % len(CORRECTION_REASONS)][0],
                    "bench",
                ]
            )
    return path


def feature_rows(home: Path, data: Path, out: Path, limit: int) -> tuple[Path, int]:
    """The ready feature rows of the first ``limit`` leads, as ``mlflow models predict`` reads them."""
    import pandas as pd

    from model.features import build_features
    from model.registry import configure, load_model

    configure(f"sqlite:///{home / 'mlflow.db'}")
    model, _ = load_model(f"models:/{MODEL}/1")
    leads = pd.read_parquet(data / "leads.parquet").head(limit)
    leads["lead_id"] = leads["lead_id"].astype(str)
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    # The same reference time as `leadready score` (the last event of the whole table),
    # then only these leads' events (a million leads' would not fit twice in memory).
    table = pq.read_table(data / "events.parquet", columns=["timestamp"])
    as_of = pc.max(table["timestamp"]).as_py()
    events = pd.read_parquet(
        data / "events.parquet", filters=[("lead_id", "in", leads["lead_id"].tolist())]
    )
    events["lead_id"] = events["lead_id"].astype(str)
    features = build_features(leads, events, as_of=as_of, config=model.feature_config)
    features = features.reindex(columns=model.input_columns)
    path = out / f"features-{limit}.csv"
    features.to_csv(path, index=False)
    return path, len(features)


# --------------------------------------------------------------------------- import table


def parse_importtime(text: str) -> dict[str, Any]:
    """Sum ``python -X importtime`` output: top-level imports by package, modules seen.

    Returns
    -------
    dict
        ``total_ms`` (every top-level import), ``by_package`` (ms of the top-level
        imports of each package in :data:`PACKAGES`, the others as ``other``),
        ``modules`` (count) and ``seen`` (which of :data:`WATCH` were imported).
    """
    by_package: dict[str, float] = defaultdict(float)
    modules: set[str] = set()
    total = 0.0
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        cumulative_us, indent, name = int(match[2]), len(match[3]), match[4]
        modules.add(name)
        if indent > 1:  # nested: counted in its top-level import
            continue
        top = name.split(".")[0]
        by_package[top if top in PACKAGES else "other"] += cumulative_us / 1000
        total += cumulative_us / 1000
    return {
        "total_ms": round(total, 1),
        "by_package": {k: round(v, 1) for k, v in sorted(by_package.items())},
        "modules": len(modules),
        "seen": {w: w in modules for w in WATCH},
    }


def importtime_table(commands: dict[str, list[str]], env: dict[str, str]) -> dict[str, Any]:
    """Run each command once under ``-X importtime``; the parsed sums by command."""
    table: dict[str, Any] = {}
    for name, argv in commands.items():
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "leadready", *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        table[name] = {**parse_importtime(proc.stderr.decode(errors="replace"))}
        table[name]["exit"] = proc.returncode
    return table


def importtime_markdown(table: dict[str, Any], load: float) -> str:
    packages = [
        p for p in (*PACKAGES, "other") if any(p in r["by_package"] for r in table.values())
    ]
    lines = [
        "# Start-up imports of each command",
        "",
        "Written by `python -m bench.commands` (one run each under `python -X importtime`, "
        f"PYTHONDONTWRITEBYTECODE=1, load average {load:.1f} on {os.cpu_count()} cores: "
        "importtime reports wall-clock, so on a busy machine every figure is inflated alike).",
        "Milliseconds of the top-level imports by package (a package imported by another "
        "counts under the first); then whether MLflow, scikit-learn, SciPy, scikit-learn's "
        "metrics, SciPy's stats, `training.evaluate` and LightGBM were imported at all "
        "(MLflow imports SciPy itself: `import mlflow` alone does).",
        "",
        "| command | modules | total ms | " + " | ".join(packages) + " | "
        + " | ".join(f"{w}?" for w in WATCH) + " |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in packages) + " | "
        + " | ".join("---" for _ in WATCH) + " |",
    ]  # fmt: skip
    for name, row in table.items():
        cells = [f"{row['by_package'].get(p, 0):.0f}" for p in packages]
        seen = ["yes" if row["seen"][w] else "no" for w in WATCH]
        lines.append(
            f"| `{name}` | {row['modules']} | {row['total_ms']:.0f} | "
            + " | ".join(cells)
            + " | "
            + " | ".join(seen)
            + " |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- MLflow's floor


def mlflow_floor(home: Path, env: dict[str, str], runs: int) -> dict[str, Any]:
    """What a command that talks to the registry pays in MLflow before any of our code:
    whole ``python -c`` processes (wall), each step adding to the one before, and the
    ``-X importtime`` sum of ``import mlflow``."""
    uri = f"sqlite:///{home / 'mlflow.db'}"
    steps = {
        "python -c pass": "pass",
        "import mlflow": "import mlflow",
        "from mlflow import MlflowClient": "from mlflow import MlflowClient",
        # MlflowClient opens the tracking store too (its constructor does), then the
        # registry store on the first registry call.
        "MlflowClient(): champion alias read (tracking and registry stores opened)": (
            "from mlflow import MlflowClient\n"
            f"MlflowClient({uri!r}, {uri!r}).get_model_version_by_alias({MODEL!r}, 'champion')"
        ),
    }
    out: dict[str, Any] = {}
    for name, code in steps.items():
        samples = [timed([sys.executable, "-c", code], env) for _ in range(runs)]
        out[name] = _figures(samples)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import mlflow"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    parsed = parse_importtime(proc.stderr.decode(errors="replace"))
    out["import mlflow, -X importtime"] = {
        "total_ms": parsed["total_ms"],
        "modules": parsed["modules"],
        "load": os.getloadavg()[0],
    }
    return out


# --------------------------------------------------------------------------- the run


def run(
    *,
    sizes: tuple[int, ...] = (1, 100_000, 1_000_000),
    runs: int = 3,
    bulk_runs: int = 1,
    mlflow_rows: int = 100_000,
    cache: Path | None = None,
    server: bool = True,
) -> dict[str, Any]:
    """Measure every command; see the module docstring."""
    cache = cache or Path(tempfile.gettempdir()) / "leadready-bench" / "commands-data"
    root = Path(tempfile.mkdtemp(prefix="leadready-commands-"))
    try:
        home = private_home(root)
        env = _env(home)
        lr = _bin("leadready")
        result: dict[str, Any] = {"config": {"sizes": list(sizes), "runs": runs}, "commands": {}}
        figures = result["commands"]
        bulk = [n for n in sizes if n > 1]
        small = simulated(min(bulk) if bulk else 1000, cache)
        one, one_events = one_lead(small, root)
        # Every import writes 100 new corrections (each file moves the leads on), so each
        # one has the queue re-ranked, as a CRM sync would (in the background by default).
        imports = iter(corrections_csv(home, root, shift=k) for k in range(1, 4 * runs + 2))
        score_one = [
            "score", "--in", str(one), "--events", str(one_events),
            "--out", str(root / "one-out.csv"),
        ]  # fmt: skip
        import_100 = ["corrections", "import", "<next file>"]
        # In this order each round: the champion moves (promote, rollback), then the
        # first score and import after the move resolve it through MLflow, and the
        # next ones find it resolved (model.model_cache) — both cases are reported.
        short = {
            "promote": ["promote", "2", "--reason", "bench"],
            "rollback": ["rollback", "--reason", "bench"],
            "score 1 lead, first after a champion move": score_one,
            "corrections import (100 rows), first after a champion move": import_100,
            "score 1 lead": score_one,
            "corrections import (100 rows)": import_100,
            "queue --top 20": ["queue", "--top", "20"],
        }
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in short}
        refits: list[dict[str, float]] = []
        for _ in range(runs):
            for name, argv in short.items():
                if "<next file>" in argv:
                    argv = [str(next(imports)) if a == "<next file>" else a for a in argv]
                    lines = refit_log_lines(home)
                    samples[name].append(timed([lr, *argv], env))
                    refits.append(background_refit(home, lines))
                else:
                    samples[name].append(timed([lr, *argv], env))
        for name, values in samples.items():
            figures[name] = _figures(values, target_wall=TARGET_SHORT_S)
        # Not a command: the re-ranking each import started, waited for before the next.
        result["queue_refit_in_background"] = {
            key: summary([r[key] for r in refits]) for key in ("wall", "load")
        }
        if 1 in sizes:
            figures["score 1 lead"]["leads"] = 1
            figures["score 1 lead, first after a champion move"]["leads"] = 1
        result["mlflow_floor"] = mlflow_floor(home, env, runs)
        write_result("commands", result)  # what is measured so far, should a later part stop

        if server:
            moving = [
                "promote", "rollback", "score 1 lead, first after a champion move",
                "corrections import (100 rows), first after a champion move",
            ]  # fmt: skip
            with tracking_server(home) as url:
                served_env = {**env, "MLFLOW_TRACKING_URI": url}
                served = {name: [] for name in moving}
                for _ in range(runs):
                    for name in moving:
                        argv = [
                            str(next(imports)) if a == "<next file>" else a for a in short[name]
                        ]
                        lines = refit_log_lines(home)
                        served[name].append(timed([lr, *argv], served_env))
                        if argv != short[name]:
                            background_refit(home, lines)
            for name, values in served.items():
                figures[f"{name} (MLflow tracking server)"] = _figures(
                    values, target_wall=TARGET_SHORT_S
                )
            write_result("commands", result)

        for n in bulk:
            data = simulated(n, cache)
            features, n_features = feature_rows(home, data, root, min(n, mlflow_rows))
            score_argv = [
                lr, "score", "--in", str(data / "leads.parquet"),
                "--events", str(data / "events.parquet"), "--out", str(root / f"out-{n}.parquet"),
            ]  # fmt: skip
            mlflow_argv = [
                _bin("mlflow"), "models", "predict", "-m", f"models:/{MODEL}/1",
                "-i", str(features), "-t", "csv", "-o", str(root / f"mlflow-{n}.json"),
                "--env-manager", "local",
            ]  # fmt: skip
            ours: list[dict[str, float]] = []
            theirs: list[dict[str, float]] = []
            # Up to 100k leads, also with features built in two processes (the default
            # is one): what a second process gives, side by side.
            single: list[dict[str, float]] = []
            for _ in range(bulk_runs):  # A B (C) A B (C)
                ours.append(timed(score_argv, env))
                theirs.append(timed(mlflow_argv, env))
                if n <= 100_000:
                    single.append(timed([*score_argv, "--feature-processes", "2"], env))
            if single:
                figures[f"score {n:,} leads, features in two processes"] = _figures(
                    single,
                    leads=n,
                    leads_per_s=round(n / summary([s["wall"] for s in single])["median"]),
                )
            ours_rate = n / summary([s["wall"] for s in ours])["median"]
            theirs_rate = n_features / summary([s["wall"] for s in theirs])["median"]
            figures[f"score {n:,} leads"] = _figures(
                ours,
                leads=n,
                leads_per_s=round(ours_rate),
                leads_per_cpu_s=round(n / summary([s["cpu"] for s in ours])["median"]),
                target_leads_per_s=TARGET_LEADS_PER_S,
            )
            # One MLflow figure per bulk size: at 1M it runs on the first 100k rows too,
            # and must not overwrite the one measured beside the 100k score.
            beside = "" if n == n_features else f", beside the {n:,}-lead score"
            figures[f"mlflow models predict {n_features:,} feature rows{beside}"] = _figures(
                theirs, leads=n_features, leads_per_s=round(theirs_rate)
            )
            figures[f"score {n:,} leads"]["vs_mlflow"] = round(ours_rate / theirs_rate, 2)
            (root / f"out-{n}.parquet").unlink(missing_ok=True)
            write_result("commands", result)

        load = os.getloadavg()[0]
        fresh = {  # each import with rows of its own, as timed above
            name: [str(next(imports)) if a == "<next file>" else a for a in argv]
            for name, argv in short.items()
        }
        table = importtime_table({"--help": ["--help"], **fresh}, env)
        result["importtime"] = table
        (Path(write_result("commands", result)).parent / "importtime.md").write_text(
            importtime_markdown(table, load)
        )
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows for ``bench/results/SUMMARY.md``: each command's figure next to its target."""
    rows: list[tuple[str, str, str]] = []
    for name, fig in result["commands"].items():
        wall, cpu, load = fig["wall"]["median"], fig["cpu"]["median"], fig["load"]["median"]
        value = f"{wall:.2f} s wall, {cpu:.2f} s CPU (load {load:.1f})"
        target = ""
        if "target_wall" in fig:
            target = f"< {fig['target_wall']:g} s wall"
        if "leads_per_s" in fig:
            value = f"{fig['leads_per_s']:,} leads/s wall ({value})"
        if "target_leads_per_s" in fig:
            value += f", {fig['leads_per_cpu_s']:,} leads per CPU-s, {fig['vs_mlflow']}× mlflow"
            target = f"≥ {fig['target_leads_per_s']:,} leads/s and ≥ {TARGET_VS_MLFLOW:g}× mlflow"
        rows.append((f"`{name}` (whole process)", value, target))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commands", description=__doc__)
    parser.add_argument(
        "--sizes",
        default="1,100000,1000000",
        help="lead counts scored (1 = the one-lead command; the others with events)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each short command")
    parser.add_argument("--bulk-runs", type=int, default=1, help="A B rounds of bulk scoring")
    parser.add_argument(
        "--mlflow-rows", type=int, default=100_000, help="most leads given to mlflow predict"
    )
    parser.add_argument(
        "--no-tracking-server",
        dest="server",
        action="store_false",
        help="skip timing promote/rollback against an mlflow server over the same registry",
    )
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    result = run(
        sizes=sizes,
        runs=args.runs,
        bulk_runs=args.bulk_runs,
        mlflow_rows=args.mlflow_rows,
        server=args.server,
    )
    for figure, value, target in summary_rows(result):
        print(f"{figure}: {value}   [{target}]")
    for name, fig in result.get("mlflow_floor", {}).items():
        if "wall" in fig:
            wall, load = fig["wall"]["median"], fig["load"]["median"]
            print(f"MLflow floor, {name}: {wall:.2f} s wall (load {load:.1f})")
        else:
            print(f"MLflow floor, {name}: {fig['total_ms']:.0f} ms, {fig['modules']} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
