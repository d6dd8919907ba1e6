"""Waiting for something a test can observe, with a deadline: never a sleep-for-a-while.

Prefer an event the code under test sets (``on_written``, ``on_swap``,
``on_failure``, ``flush()``). When the thing waited for is another process or
thread with no hook (a server coming up, a log line, rows reaching a
database), :func:`wait_until` polls a condition and fails with a message when
the deadline passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float = 10.0,
    *,
    interval: float = 0.02,
    message: str | Callable[[], Any] = "",
) -> T:
    """Call ``condition`` until it returns something truthy and return that.

    Raises ``AssertionError`` (with ``message``, or what a callable ``message``
    returns, e.g. a server's log) when ``timeout`` seconds pass first. An
    assertion inside ``condition`` (a child process that died) fails at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = message() if callable(message) else message
            raise AssertionError(f"not true within {timeout} s: {detail}")
        time.sleep(interval)  # the poll interval, the one sleep of the waits
