"""The dependency audit's gate (``make audit``): what fails the build and what doesn't."""

from __future__ import annotations

import json

import pytest

from leadready.audit import judge, main


def _report(*deps: dict) -> dict:
    return {"dependencies": list(deps), "fixes": []}


CLEAN = {"name": "flask", "version": "3.1.3", "vulns": []}
FIXABLE = {
    "name": "jinja2",
    "version": "3.1.2",
    "vulns": [{"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"], "aliases": []}],
}
UNFIXED = {"name": "lightgbm", "version": "4.7.0", "vulns": [{"id": "PYSEC-X", "fix_versions": []}]}
SKIPPED = {"name": "numpy", "skip_reason": "Connection refused"}


def _run(tmp_path, report, *flags, capsys):
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(report))
    code = main([str(path), *flags])
    return code, capsys.readouterr()


def test_clean_report_passes(tmp_path, capsys):
    code, out = _run(tmp_path, _report(CLEAN), capsys=capsys)
    assert code == 0
    assert "audited 1 of 1 packages; 0 known vulnerabilities" in out.out


def test_vulnerability_with_a_fix_fails_even_when_unaudited_is_allowed(tmp_path, capsys):
    code, out = _run(tmp_path, _report(CLEAN, FIXABLE, SKIPPED), "--allow-unaudited", capsys=capsys)
    assert code == 1
    assert "vulnerable: jinja2 3.1.2 GHSA-h5c8-rqwp-cp95 (fixed in 3.1.3)" in out.out


def test_vulnerability_without_a_fix_is_reported_not_fatal(tmp_path, capsys):
    code, out = _run(tmp_path, _report(CLEAN, UNFIXED), capsys=capsys)
    assert code == 0
    assert "no fix yet: lightgbm 4.7.0 PYSEC-X" in out.out


def test_unreachable_service_never_reads_as_clean(tmp_path, capsys):
    code, out = _run(tmp_path, _report(SKIPPED, CLEAN), capsys=capsys)
    assert code == 2
    assert "error: 1 packages not audited" in out.out and "numpy" in out.out
    code, out = _run(tmp_path, _report(SKIPPED, CLEAN), "--allow-unaudited", capsys=capsys)
    assert code == 0
    assert "WARNING: 1 packages not audited" in out.out


def test_missing_or_foreign_report_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path / "absent.json")]) == 2
    assert "no pip-audit report" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": []}))
    assert main([str(bad)]) == 2
    assert "not a pip-audit JSON report" in capsys.readouterr().err


def test_judge_counts():
    verdict = judge(_report(CLEAN, FIXABLE, UNFIXED, SKIPPED))
    assert verdict.audited == 3
    assert verdict.unaudited == ["numpy"]
    assert [f[0] for f in verdict.fixable] == ["jinja2"]
    assert verdict.exit_code() == 1
    with pytest.raises(ValueError):
        judge({})
