"""``leadready user …`` and ``leadready apikey …``: review UI users and API keys.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO

import click

from data.store import API_KEY_ROLES, USER_ROLES
from leadready.commands.db import open_store

__all__ = ["apikey", "user"]


@contextlib.contextmanager
def _failing(*errors: type[Exception]) -> Iterator[None]:
    """The store's ``errors`` as one-line command errors (KeyError's repr quotes dropped)."""
    try:
        yield
    except errors as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise click.ClickException(str(message).strip() or type(exc).__name__) from None


def _read_password(password_file: IO[str] | None) -> str:
    """The password from the file (one trailing newline dropped) or a hidden double prompt."""
    if password_file is not None:
        password = password_file.read().rstrip("\r\n")
        if not password:
            raise click.ClickException("the password file is empty")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


_PASSWORD_FILE = click.option(
    "--password-file",
    type=click.File("r", encoding="utf-8"),
    help="Read the password from this file ('-' for standard input) instead of prompting.",
)


# ------------------------------------------------------------------------ user


@click.group()
def user() -> None:
    """Manage review UI users: reps, analysts and admins."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(USER_ROLES), required=True, help="The user's role.")
@_PASSWORD_FILE
def user_add(name: str, role: str, password_file: IO[str] | None) -> None:
    """Add a user NAME with a role and a password."""
    with open_store() as store:
        if store.get_user_by_name(name.strip()) is not None:
            raise click.ClickException(f"a user named {name.strip()!r} already exists")
        password = _read_password(password_file)
        with _failing(ValueError):
            created = store.create_user(name, role, password)
    click.echo(f"added user {created.name!r} with role {created.role}")


@user.command("list")
def user_list() -> None:
    """List users with their roles and whether they can log in."""
    with open_store() as store:
        users = store.list_users()
    if not users:
        click.echo("no users yet: add one with 'leadready user add NAME --role rep'")
        return
    width = max(len("name"), *(len(u.name) for u in users))
    click.echo(f"{'name':<{width}}  {'role':<7}  {'status':<8}  created")
    for u in users:
        status = "active" if u.active else "disabled"
        created = u.created_at.strftime("%Y-%m-%d %H:%M UTC")
        click.echo(f"{u.name:<{width}}  {u.role:<7}  {status:<8}  {created}")


@user.command("passwd")
@click.argument("name")
@_PASSWORD_FILE
def user_passwd(name: str, password_file: IO[str] | None) -> None:
    """Set a new password for user NAME."""
    with open_store() as store:
        if store.get_user_by_name(name) is None:
            raise click.ClickException(f"no user named {name!r}")
        password = _read_password(password_file)
        with _failing(KeyError, ValueError):
            store.set_password(name, password)
    click.echo(f"password of {name!r} changed")


@user.command("disable")
@click.argument("name")
def user_disable(name: str) -> None:
    """Disable user NAME: they can no longer log in; their history stays."""
    with open_store() as store, _failing(KeyError):
        store.deactivate_user(name)
    click.echo(f"user {name!r} disabled")


# ---------------------------------------------------------------------- apikey


@click.group()
def apikey() -> None:
    """Manage API keys for marketing automation and CRM clients."""


@apikey.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(API_KEY_ROLES),
    default="client",
    show_default=True,
    help="client: score and send corrections; admin: also operations endpoints.",
)
def apikey_create(name: str, role: str) -> None:
    """Create an API key NAME and print it (the only time it is shown)."""
    with open_store() as store, _failing(ValueError):
        key = store.create_api_key(name, role)
    click.echo(key)
    click.echo(
        f"API key {name.strip()!r} ({role}) created. It is not shown again: store it now and "
        "send it as 'Authorization: Bearer <key>'.",
        err=True,
    )


@apikey.command("revoke")
@click.argument("name")
def apikey_revoke(name: str) -> None:
    """Revoke API key NAME: requests with it are refused from now on."""
    with open_store() as store, _failing(KeyError):
        info = store.revoke_api_key(name)
    when = info.revoked_at.strftime("%Y-%m-%d %H:%M UTC") if info.revoked_at else "now"
    click.echo(f"API key {info.name!r} revoked ({when})")


@apikey.command("list")
def apikey_list() -> None:
    """List API keys: names, prefixes, roles and status (never the keys)."""
    with open_store() as store:
        keys = store.list_api_keys()
    if not keys:
        click.echo("no API keys yet: create one with 'leadready apikey create NAME'")
        return
    width = max(len("name"), *(len(k.name) for k in keys))
    click.echo(f"{'name':<{width}}  {'prefix':<13}  {'role':<6}  {'status':<7}  created")
    for k in keys:
        status = "revoked" if k.revoked else "active"
        created = k.created_at.strftime("%Y-%m-%d %H:%M UTC")
        click.echo(f"{k.name:<{width}}  {k.prefix + '…':<13}  {k.role:<6}  {status:<7}  {created}")
