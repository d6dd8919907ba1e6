"""``leadready serve``'s set-up, without starting gunicorn."""

from __future__ import annotations

import stat

from click.testing import CliRunner

from leadready.cli import main
from leadready.config import Settings
from leadready.gunicorn_conf import serving_url
from leadready.server import GunicornApp, ServeOptions, prepare_home


def test_prepare_home_makes_a_clean_metrics_folder_and_a_stable_secret(tmp_path):
    settings = Settings.for_home(tmp_path / "home")
    prom, secret = prepare_home(settings, 8123)
    assert prom.is_dir() and prom.name == "prometheus-8123"
    (prom / "counter_123.db").write_bytes(b"stale")
    key_file = settings.home / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    prom_again, secret_again = prepare_home(settings, 8123)
    assert prom_again == prom and list(prom.iterdir()) == []  # stale samples are gone
    assert secret_again == secret and len(secret) == 64  # all workers and restarts share it


def test_bind_and_url():
    assert ServeOptions(host="127.0.0.1", port=9000).bind == "127.0.0.1:9000"
    assert ServeOptions(host="::1", port=9000).bind == "[::1]:9000"
    assert serving_url(["0.0.0.0:8000"]) == "http://127.0.0.1:8000"
    assert serving_url(["[::1]:8000"]) == "http://[::1]:8000"


def test_gunicorn_app_takes_known_settings_and_hooks():
    app = GunicornApp(
        {"bind": "127.0.0.1:9001", "workers": 3, "threads": 2, "no_such_setting": 1},
        {"SECRET_KEY": "s"},
    )
    assert app.cfg.bind == ["127.0.0.1:9001"]
    assert app.cfg.workers == 3 and app.cfg.threads == 2


def test_serve_command_options():
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--workers", "--threads", "--poll-seconds"):
        assert option in result.output
    bad = CliRunner().invoke(main, ["serve", "--workers", "0"])
    assert bad.exit_code == 2


def test_multiprocess_metrics_work_even_if_prometheus_was_imported_first(tmp_path):
    """``leadready demo`` may import prometheus_client before serving; workers must still share."""
    import subprocess
    import sys

    code = (
        "import prometheus_client, sys\n"
        "from pathlib import Path\n"
        "from leadready.server import _multiprocess_metrics\n"
        "_multiprocess_metrics(Path(sys.argv[1]))\n"
        "c = prometheus_client.Counter('x', 'x', registry=None)\n"
        "c.inc()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    assert [p.name.split("_")[0] for p in tmp_path.iterdir()] == ["counter"]


def test_post_fork_gives_inherited_engines_a_fresh_pool(tmp_path):
    import sqlalchemy as sa

    from leadready.gunicorn_conf import post_fork

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        conn.execute(sa.text("select 1"))
    old_pool = engine.pool
    assert old_pool.checkedin() == 1  # a pooled connection a fork would share
    post_fork(None, None)
    assert engine.pool is not old_pool and engine.pool.checkedin() == 0
    engine.dispose()
    old_pool.dispose()


def test_post_worker_init_freezes_the_heap_after_every_model_swap():
    """The worker's heap is frozen once a model is in (the collector then scans only what
    requests make) and frozen afresh at the next swap, after one full collection."""
    import gc
    from types import SimpleNamespace

    from leadready.gunicorn_conf import post_worker_init
    from serve.state import EXTENSION

    class Holder:
        def __init__(self):
            self.listeners, self.started = [], False

        def on_swap(self, listener):
            self.listeners.append(listener)

        def start(self):
            self.started = True

    holder = Holder()
    app = SimpleNamespace(extensions={EXTENSION: SimpleNamespace(holder=holder)})
    post_worker_init(SimpleNamespace(wsgi=app, age=2))
    assert holder.started and holder.listeners
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        for listener in holder.listeners:
            listener("version 2", "version 1")
        assert gc.get_freeze_count() > 0
        made_after = [[] for _ in range(3)]  # objects a request makes: not frozen yet

        def tracked():
            return {id(o) for o in gc.get_objects()}

        assert {id(x) for x in made_after} <= tracked()
        for listener in holder.listeners:
            listener("version 3", "version 2")
        assert not {id(x) for x in made_after} & tracked()  # frozen at the next swap
    finally:
        gc.unfreeze()
