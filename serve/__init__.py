"""leadready: serve layer."""
