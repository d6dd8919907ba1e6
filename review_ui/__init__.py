"""leadready: review_ui layer."""
