"""Subcommands of the leadready command line, one module per area."""
