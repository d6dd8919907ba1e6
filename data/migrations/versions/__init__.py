"""Migration scripts, one per schema revision, oldest first by ``down_revision``."""
