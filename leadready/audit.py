"""The dependency audit's verdict: read pip-audit's JSON report and decide.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Verdict", "judge", "main"]


@dataclass
class Verdict:
    """What a pip-audit report says about the pinned set."""

    audited: int
    unaudited: list[str] = field(default_factory=list)
    fixable: list[tuple[str, str, str, list[str]]] = field(default_factory=list)
    unfixed: list[tuple[str, str, str]] = field(default_factory=list)

    def exit_code(self, *, allow_unaudited: bool = False) -> int:
        if self.fixable:
            return 1
        if self.unaudited and not allow_unaudited:
            return 2
        return 0

    def lines(self, *, allow_unaudited: bool = False) -> list[str]:
        out = [
            f"vulnerable: {name} {version} {vid} (fixed in {', '.join(fixes)})"
            for name, version, vid, fixes in self.fixable
        ]
        out += [
            f"vulnerable, no fix yet: {name} {version} {vid}" for name, version, vid in self.unfixed
        ]
        total = len(self.fixable) + len(self.unfixed)
        out.append(
            f"audited {self.audited} of {self.audited + len(self.unaudited)} packages; "
            f"{total} known vulnerabilit{'y' if total == 1 else 'ies'}"
        )
        if self.unaudited:
            shown = ", ".join(self.unaudited[:10]) + (" ..." if len(self.unaudited) > 10 else "")
            prefix = "WARNING: " if allow_unaudited else "error: "
            out.append(
                f"{prefix}{len(self.unaudited)} packages not audited (advisory service "
                f"unreachable?): {shown}"
            )
        return out


def judge(report: dict) -> Verdict:
    """Sort a pip-audit JSON report (``{"dependencies": [...]}``) into a verdict."""
    deps = report.get("dependencies")
    if not isinstance(deps, list):
        raise ValueError('not a pip-audit JSON report: no "dependencies" list')
    verdict = Verdict(audited=0)
    for dep in deps:
        name, version = str(dep.get("name")), str(dep.get("version", "?"))
        if dep.get("skip_reason"):
            verdict.unaudited.append(name)
            continue
        verdict.audited += 1
        for vuln in dep.get("vulns") or []:
            fixes = [str(v) for v in vuln.get("fix_versions") or []]
            vid = str(vuln.get("id", "?"))
            if fixes:
                verdict.fixable.append((name, version, vid, fixes))
            else:
                verdict.unfixed.append((name, version, vid))
    return verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leadready.audit", description=__doc__)
    parser.add_argument("report", type=Path, help="pip-audit's JSON output")
    parser.add_argument(
        "--allow-unaudited",
        action="store_true",
        help="warn instead of failing when packages could not be audited",
    )
    args = parser.parse_args(argv)
    try:
        verdict = judge(json.loads(args.report.read_text()))
    except FileNotFoundError:
        print(f"error: {args.report}: no pip-audit report (did pip-audit run?)", file=sys.stderr)
        return 2
    except (json.JSONDecodeError, ValueError) as exc:
        print(f"error: {args.report}: {exc}", file=sys.stderr)
        return 2
    for line in verdict.lines(allow_unaudited=args.allow_unaudited):
        print(line)
    return verdict.exit_code(allow_unaudited=args.allow_unaudited)


if __name__ == "__main__":
    sys.exit(main())
