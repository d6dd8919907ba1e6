"""The model holder: background load, alias polling, atomic swap, failures keep the old model.

These tests use a fake registry (a dict alias → version) so they run in
milliseconds; the swap under real HTTP requests with a real MLflow registry is
in tests/test_api_reload.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from serve.holder import ModelHolder, parse_model_uri
from tests.support.waiting import wait_until


class FakeRegistry:
    """alias → version, and a loader that can be told to fail or to wait for a gate."""

    def __init__(self) -> None:
        self.aliases = {"champion": "1"}
        self.loads: list[str] = []
        self.fail_versions: set[str] = set()
        self.gate: threading.Event | None = None  # a slow load: it waits until the gate opens
        self.resolve_error: Exception | None = None

    def load(self, uri: str):
        self.loads.append(uri)
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        version = uri.rsplit("/", 1)[-1]
        if version in self.fail_versions:
            raise OSError(f"artifact of version {version} is missing")
        return {"model-of": version}, None, version

    def resolve(self, name: str, alias: str) -> str | None:
        if self.resolve_error is not None:
            raise self.resolve_error
        return self.aliases.get(alias)


def _holder(reg: FakeRegistry, poll: float = 0.05, uri: str = "models:/lr@champion", **kw):
    return ModelHolder(uri, loader=reg.load, resolver=reg.resolve, poll_seconds=poll, **kw)


def _wait(predicate, timeout: float = 5.0) -> bool:
    return bool(wait_until(predicate, timeout, interval=0.005))


def _model_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "leadready-model"}


class FakeClock:
    """Monotonic seconds that move only when the test says so (the holder's back-off)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("uri", "name", "alias", "version"),
    [
        ("models:/lead-readiness@champion", "lead-readiness", "champion", None),
        ("models:/lead-readiness/7", "lead-readiness", None, "7"),
        ("runs:/abc/model", None, None, None),
        ("/tmp/some/model", None, None, None),
    ],
)
def test_parse_model_uri(uri, name, alias, version):
    parsed = parse_model_uri(uri)
    assert (parsed.name, parsed.alias, parsed.version) == (name, alias, version)


def test_nothing_loads_before_start_then_loads_in_background():
    reg = FakeRegistry()
    reg.gate = threading.Event()
    holder = _holder(reg)
    assert holder.current is None and holder.status == "loading"
    assert not holder.running and reg.loads == []  # constructing a holder does no work
    t0 = time.perf_counter()
    holder.start()
    assert time.perf_counter() - t0 < 0.1  # start() does not block on the load
    assert holder.current is None
    assert _wait(lambda: reg.loads)  # the load runs in the background, still held at the gate
    assert holder.current is None and holder.status == "loading"
    reg.gate.set()
    assert holder.wait_ready(5)
    assert holder.current.version == "1"
    assert holder.current.uri == "models:/lr/1"  # the fixed version the alias pointed at
    assert holder.status == "ready"
    holder.stop()


def test_start_is_idempotent():
    reg = FakeRegistry()
    holder = _holder(reg)
    before = _model_threads()
    holder.start()
    holder.start()
    assert len(_model_threads() - before) == 1  # one thread for both calls
    assert holder.wait_ready(5)
    holder.stop()
    assert reg.loads.count("models:/lr/1") == 1


def test_alias_move_is_followed_and_old_reference_stays_valid():
    reg = FakeRegistry()
    holder = _holder(reg)
    swaps = []
    holder.on_swap(lambda new, old: swaps.append((new.version, old.version if old else None)))
    holder.start()
    assert holder.wait_ready(5)
    in_flight = holder.current  # a request holding the old model
    reg.aliases["champion"] = "2"  # promotion
    assert _wait(lambda: holder.current.version == "2")
    assert in_flight.version == "1" and in_flight.model == {"model-of": "1"}
    reg.aliases["champion"] = "1"  # rollback
    assert _wait(lambda: holder.current.version == "1")
    holder.stop()
    assert swaps == [("1", None), ("2", "1"), ("1", "2")]


def test_failed_load_keeps_old_model_and_reports():
    reg = FakeRegistry()
    clock = FakeClock()
    holder = _holder(reg, clock=clock)
    failures = []
    holder.on_failure(failures.append)
    holder.start()
    assert holder.wait_ready(5)
    reg.fail_versions.add("2")
    reg.aliases["champion"] = "2"
    assert _wait(lambda: len(failures) >= 1)
    assert holder.current.version == "1"
    assert holder.status == "ready"
    assert "artifact of version 2 is missing" in holder.last_error
    # the broken version is retried with back-off, not on every poll: six polls' worth
    # of the holder's clock (0.3 s at 0.05 s), each followed by a check
    for _ in range(6):
        clock.now += 0.05
        holder.check()
    tries = reg.loads.count("models:/lr/2")
    assert 1 <= tries <= 4
    # once fixed, a reload picks it up
    reg.fail_versions.clear()
    new, previous = holder.reload()
    assert (new.version, previous.version) == ("2", "1")
    assert holder.last_error is None
    holder.stop()


def test_registry_down_keeps_model():
    reg = FakeRegistry()
    holder = _holder(reg)
    holder.start()
    assert holder.wait_ready(5)
    reg.resolve_error = ConnectionError("tracking server unreachable")
    assert holder.check() is False
    assert holder.current.version == "1"
    assert "unreachable" in holder.last_error
    holder.stop()


def test_first_load_failure_is_retried_and_readiness_says_failed():
    reg = FakeRegistry()
    reg.fail_versions.add("1")
    holder = _holder(reg)
    holder.start()
    assert _wait(lambda: holder.status == "failed")
    assert holder.current is None
    reg.fail_versions.clear()
    assert holder.wait_ready(5)
    assert holder.status == "ready"
    holder.stop()


def test_missing_alias_is_a_failure_not_a_crash():
    reg = FakeRegistry()
    reg.aliases.clear()
    holder = _holder(reg)
    assert holder.check() is False
    assert "does not exist" in holder.last_error
    with pytest.raises(LookupError):
        holder.reload()


def test_reload_forces_a_load_of_the_same_version():
    reg = FakeRegistry()
    holder = _holder(reg, poll=60)
    holder.start()
    assert holder.wait_ready(5)
    before = holder.current
    new, previous = holder.reload()
    assert previous is before and new is holder.current and new is not before
    assert new.version == "1"
    holder.stop()


def test_fixed_uri_is_loaded_once_and_not_polled():
    reg = FakeRegistry()
    holder = _holder(reg, uri="models:/lr/3")
    holder.start()
    assert holder.wait_ready(5)
    assert holder.current.version == "3"
    assert _wait(lambda: not holder.running)  # the thread ends after the one load: no polls
    assert reg.loads == ["models:/lr/3"]
    assert not holder.follows_alias
    holder.stop()


def test_readers_never_see_a_missing_model_during_swaps():
    reg = FakeRegistry()
    holder = _holder(reg, poll=0.01)
    holder.start()
    assert holder.wait_ready(5)
    seen: set[str] = set()
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            current = holder.current
            if current is None or current.model != {"model-of": current.version}:
                errors.append("inconsistent")
            else:
                seen.add(current.version)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for v in ("2", "3", "4"):
        reg.aliases["champion"] = v
        assert _wait(lambda v=v: holder.current.version == v)
    assert _wait(lambda: "4" in seen)  # a reader gets the interpreter after the last swap
    stop.set()
    for t in threads:
        t.join()
    holder.stop()
    assert errors == []
    assert {"1", "4"} <= seen
