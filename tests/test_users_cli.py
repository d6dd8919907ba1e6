"""``leadready db``, ``user`` and ``apikey`` through click's test runner."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from data.store import Store
from leadready.cli import main
from leadready.config import Settings


def _head() -> str:
    """The newest migration revision (the store's head)."""
    return Store("sqlite://").head_revision()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty LEADREADY_HOME; DATABASE_URL from the outer environment is ignored."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("LEADREADY_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, env: dict | None = None):
        return runner.invoke(main, list(args), input=input, env=env)

    return invoke


@pytest.fixture
def open_home_store(home):
    stores: list[Store] = []

    def factory() -> Store:
        store = Store(Settings.from_env().database_url)
        stores.append(store)
        return store

    yield factory
    for store in stores:
        store.dispose()


def _password_file(tmp_path, text: str):
    path = tmp_path / "pw.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_db_upgrade_then_current(home, run):
    before = run("db", "current", "--check")
    assert before.exit_code == 1
    assert "none (empty database)" in before.output
    assert "leadready db upgrade" in before.output

    first = run("db", "upgrade")
    assert first.exit_code == 0, first.output
    assert f"upgraded from an empty database to revision {_head()}" in first.output
    assert (home / "leadready.db").exists()

    again = run("db", "upgrade")
    assert again.exit_code == 0 and f"already at revision {_head()}" in again.output
    now = run("db", "current", "--check")
    assert now.exit_code == 0 and "up to date" in now.output


def test_user_add_from_file_then_login(home, run, tmp_path, open_home_store):
    result = run(
        "user",
        "add",
        "ana",
        "--role",
        "rep",
        "--password-file",
        _password_file(tmp_path, "s3cret pass\n"),
    )
    assert result.exit_code == 0, result.output
    assert "added user 'ana' with role rep" in result.output
    store = open_home_store()
    assert store.authenticate("ana", "s3cret pass").role == "rep"  # trailing newline dropped
    assert store.authenticate("ana", "s3cret pass\n") is None


def test_user_add_prompts_twice_until_the_passwords_match(home, run, open_home_store):
    result = run("user", "add", "ben", "--role", "analyst", input="one\ntwo\nright\nright\n")
    assert result.exit_code == 0, result.output
    assert "right" not in result.output  # hidden input is not echoed
    assert open_home_store().authenticate("ben", "right").role == "analyst"


def test_user_add_reports_errors_without_a_traceback(home, run, tmp_path):
    pw = _password_file(tmp_path, "pw")
    assert run("user", "add", "ana", "--role", "rep", "--password-file", pw).exit_code == 0
    again = run("user", "add", "ana", "--role", "admin", "--password-file", pw)
    assert again.exit_code == 1
    assert "already exists" in again.output
    assert "Traceback" not in again.output
    prompted = run("user", "add", "ana", "--role", "rep", input="")
    assert prompted.exit_code == 1 and "already exists" in prompted.output
    assert "Password" not in prompted.output  # refused before asking for a password

    bad_role = run("user", "add", "cy", "--role", "boss", "--password-file", pw)
    assert bad_role.exit_code == 2 and "boss" in bad_role.output

    empty = run(
        "user", "add", "dee", "--role", "rep", "--password-file", _password_file(tmp_path, "\n")
    )
    assert empty.exit_code == 1 and "empty" in empty.output


@pytest.mark.slow
def test_user_list_passwd_and_disable(home, run, tmp_path, open_home_store):
    assert "no users yet" in run("user", "list").output
    run("user", "add", "ana", "--role", "admin", "--password-file", _password_file(tmp_path, "old"))
    run("user", "add", "bo", "--role", "rep", "--password-file", _password_file(tmp_path, "pw"))
    listing = run("user", "list")
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert lines[0].split() == ["name", "role", "status", "created"]
    assert lines[1].split()[:3] == ["ana", "admin", "active"]
    assert lines[2].split()[:3] == ["bo", "rep", "active"]
    assert "argon2" not in listing.output

    changed = run("user", "passwd", "ana", input="new\nnew\n")
    assert changed.exit_code == 0 and "password of 'ana' changed" in changed.output
    store = open_home_store()
    assert store.authenticate("ana", "old") is None
    assert store.authenticate("ana", "new") is not None

    disabled = run("user", "disable", "bo")
    assert disabled.exit_code == 0
    assert store.authenticate("bo", "pw") is None
    assert run("user", "list").output.splitlines()[2].split()[:3] == ["bo", "rep", "disabled"]

    for args in (("user", "passwd", "ghost"), ("user", "disable", "ghost")):
        missing = run(*args, input="x\nx\n")
        assert missing.exit_code == 1 and "no user named 'ghost'" in missing.output


def test_apikey_create_prints_the_key_once_and_list_never_shows_it(home, run, open_home_store):
    created = run("apikey", "create", "hubspot")
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("lr_") and "\n" not in key
    assert "not shown again" in created.stderr and key not in created.stderr

    info = open_home_store().verify_api_key(key)
    assert (info.name, info.role, info.revoked) == ("hubspot", "client", False)

    admin = run("apikey", "create", "ops", "--role", "admin")
    assert open_home_store().verify_api_key(admin.stdout.strip()).role == "admin"

    listing = run("apikey", "list")
    assert listing.exit_code == 0
    assert key not in listing.output
    rows = {line.split()[0]: line.split() for line in listing.output.splitlines()[1:]}
    assert rows["hubspot"][1] == key[:10] + "…"
    assert rows["hubspot"][2:4] == ["client", "active"]
    assert rows["ops"][2:4] == ["admin", "active"]

    dup = run("apikey", "create", "hubspot")
    assert dup.exit_code == 1 and "already exists" in dup.output


def test_apikey_revoke(home, run, open_home_store):
    key = run("apikey", "create", "marketo").stdout.strip()
    revoked = run("apikey", "revoke", "marketo")
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert open_home_store().verify_api_key(key).revoked is True
    listed = run("apikey", "list").output.splitlines()[1].split()
    assert listed[0] == "marketo" and listed[3] == "revoked"
    missing = run("apikey", "revoke", "ghost")
    assert missing.exit_code == 1 and "no API key named 'ghost'" in missing.output


def test_an_unreachable_database_is_a_clear_error(home, run):
    env = {"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"}
    result = run("user", "list", env=env)
    assert result.exit_code == 1
    assert "Error: database postgresql+psycopg://nobody@127.0.0.1:1/none" in result.output
    assert "Traceback" not in result.output
    bad = run("apikey", "list", env={"DATABASE_URL": "nosuchdb://x"})
    assert bad.exit_code == 1 and "cannot use the database URL" in bad.output


def test_commands_work_on_both_backends(home, run, tmp_path, db_url):
    env = {"DATABASE_URL": db_url}
    pw = _password_file(tmp_path, "pw")
    assert run("user", "add", "ana", "--role", "rep", "--password-file", pw, env=env).exit_code == 0
    assert run("user", "list", env=env).output.splitlines()[1].split()[:2] == ["ana", "rep"]
    key = run("apikey", "create", "crm", env=env).stdout.strip()
    store = Store(db_url)
    try:
        assert store.authenticate("ana", "pw") is not None
        assert store.verify_api_key(key).name == "crm"
    finally:
        store.dispose()
    assert not (home / "leadready.db").exists()  # DATABASE_URL won over the home default
