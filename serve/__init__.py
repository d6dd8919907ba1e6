"""leadready: serve layer (scoring API, MLflow-protocol endpoint, model holder, metrics).

``create_app`` is re-exported lazily: importing ``serve`` (or ``serve.server``)
must not import Flask or prometheus_client before ``leadready serve`` has set
up the multiprocess metrics folder.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from serve.app import create_app

        return create_app
    raise AttributeError(f"module 'serve' has no attribute {name!r}")
