"""leadready: model layer."""
