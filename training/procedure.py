"""What the training procedure chose for each head, and the cross-validated scores behind it.
Design notes: ``docs/design/training.md``."""

from __future__ import annotations

from typing import Any

__all__ = ["procedure_metrics", "procedure_report", "procedure_table"]


def procedure_report(lead_model: Any) -> dict[str, dict[str, Any]]:
    """Per head: cross-fitting, decision and calibration choices with their scores."""
    out: dict[str, dict[str, Any]] = {}
    for head, est in lead_model.heads.items():
        calibration = dict(getattr(est, "calibration_", {}) or {})
        cv = getattr(est, "cv_", None)
        decision = dict(getattr(est, "decision_", {}) or {})
        out[head] = {
            "fitting": "cross-fitted" if cv else "calibration slice",
            "rows_boosted": int(getattr(est, "n_train_rows_", 0)),
            "rounds": int(getattr(est, "n_rounds_", 0)),
            "family": getattr(est, "family_", "lightgbm"),
            "families": dict((cv or {}).get("families") or {}),
            "linear": (cv or {}).get("linear"),
            "cv": cv,
            "decision": decision,
            "calibration": {
                "method": calibration.get("method"),
                "candidates": calibration.get("candidates", {}),
                "out_of_fold": bool(calibration.get("out_of_fold", False)),
            },
        }
    return out


def procedure_metrics(report: dict[str, dict[str, Any]]) -> dict[str, float]:
    """MLflow metrics: ``procedure_<head>_<what>`` for every score the report holds."""
    metrics: dict[str, float] = {}
    for head, r in report.items():
        p = f"procedure_{head}_"
        metrics[p + "rows_boosted"] = float(r["rows_boosted"])
        metrics[p + "rounds"] = float(r["rounds"])
        decision = r["decision"]
        for key, name in (("macro_f1_argmax", "argmax"), ("macro_f1", "decided")):
            if decision.get(key) is not None:
                metrics[f"{p}oof_macro_f1_{name}"] = float(decision[key])
        for method, scores in r["calibration"]["candidates"].items():
            for key, value in scores.items():
                metrics[f"{p}calibration_{method}_{key}"] = float(value)
        for family, scores in r.get("families", {}).items():
            for key in ("macro_f1_decided", "macro_f1_argmax", "log_loss"):
                metrics[f"{p}family_{family}_oof_{key}"] = float(scores[key])
            metrics[f"{p}family_{family}_chosen"] = float(family == r.get("family"))
        if r.get("linear"):
            metrics[p + "linear_C"] = float(r["linear"]["C"])
        if r["cv"]:
            for i, rounds in enumerate(r["cv"]["fold_rounds"]):
                metrics[f"{p}fold{i}_rounds"] = float(rounds)
    return metrics


def procedure_table(report: dict[str, dict[str, Any]]) -> Any:
    """A rich table: per head what was chosen, next to the alternatives' scores."""
    from rich.table import Table

    table = Table(title="training procedure (scores on out-of-fold / held-out rows)")
    for column in ("head", "fitting", "rounds", "model (OOF macro-F1 decided / log loss)",
                   "decision", "macro-F1 argmax → decided", "calibration",
                   "log loss of candidates"):  # fmt: skip
        table.add_column(column)
    for head, r in report.items():
        d = r["decision"]
        f1 = (
            f"{d['macro_f1_argmax']:.3f} → {d['macro_f1']:.3f}"
            if d.get("macro_f1") is not None
            else "—"
        )
        folds = r["cv"]["fold_rounds"] if r["cv"] else None
        candidates = ", ".join(
            f"{m} {s['log_loss']:.3f}" for m, s in r["calibration"]["candidates"].items()
        )
        families = r.get("families") or {}
        model = r.get("family", "lightgbm")
        if families:
            model += " — " + ", ".join(
                f"{name} {s['macro_f1_decided']:.3f}/{s['log_loss']:.3f}"
                for name, s in families.items()
            )
        if r.get("linear"):
            model += f" (logreg C={r['linear']['C']:g})"
        table.add_row(
            head,
            f"{r['fitting']} ({r['rows_boosted']:,} rows)",
            f"{r['rounds']}" + (f" (folds {folds})" if folds else ""),
            model,
            d.get("method", "argmax"),
            f1,
            str(r["calibration"]["method"]),
            candidates or "—",
        )
    return table
