"""leadready's serve layer: scoring API, MLflow-protocol endpoint, model holder, metrics.

The app is built by ``serve.app.create_app`` from objects that the composition
root (``leadready.app``) hands in; nothing here reads the environment.
"""
