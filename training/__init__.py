"""leadready: training layer."""
