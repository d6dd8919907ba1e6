"""The gate's decision in a terminal: one renderer for ``train``, ``retrain`` and ``models``.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

__all__ = ["print_decision"]


def print_decision(console: Console, decision: Any, *, indent: str = "  ") -> None:
    """Print the verdict, the sets with sizes, metrics and intervals, and the reasons."""
    if isinstance(decision, dict):
        from training.promote import GateDecision

        decision = GateDecision.from_dict(decision)
    if decision.promote:
        verdict = "[green]promoted to champion[/green]"
        if decision.forced:
            verdict += " [yellow](forced over a task change)[/yellow]"
    else:
        kept = decision.champion_version
        verdict = "[red]refused[/red]" + (f": version {kept} stays champion" if kept else "")
    console.print(f"gate: {verdict}")
    for line in decision.set_lines():
        console.print(f"{indent}{escape(line)}")
    for reason in decision.reasons:
        console.print(f"{indent}• {escape(reason)}")
