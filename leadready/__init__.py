"""leadready: leadready layer."""
