"""The promotion gate, and moving the ``champion`` alias by hand or back.
Design notes: ``docs/design/training.md``."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from data.values import utc_now
from model import registry as _registry

# training.evaluate (scikit-learn's metrics), numpy and pandas are imported by the
# functions that use them: `leadready promote` and `rollback` only move an alias.
if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS_CHAMPION",
    "AliasMove",
    "GateDecision",
    "GateSet",
    "alias_moves",
    "current_version",
    "describe_comparison",
    "gate",
    "gate_decision_of",
    "inputs_from_table",
    "move_alias",
    "promote",
    "rollback",
    "run_gate",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
#: Version tag: the champion a version replaced when it was promoted.
PROMOTED_FROM_TAG = "leadready.promoted_from"
#: Version tag prefix of alias-move records (one tag per move, JSON value).
ALIAS_MOVE_TAG = _registry.ALIAS_MOVE_TAG


@dataclass(frozen=True)
class GateDecision:
    """The gate's answer: promote or not, and every check that led there."""

    promote: bool
    reasons: list[str] = field(default_factory=list)
    challenger_version: str | None = None
    champion_version: str | None = None
    model_name: str | None = None
    sets: list[dict[str, Any]] = field(default_factory=list)
    task_differences: list[str] = field(default_factory=list)
    input_changes: dict[str, list[str]] = field(default_factory=dict)
    forced: bool = False
    at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateDecision:
        """The inverse of :meth:`to_dict` (unknown keys ignored)."""
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values.setdefault("promote", False)
        return cls(**values)

    @property
    def verdict(self) -> str:
        """``promoted`` (``promoted (forced)``) or ``refused``."""
        if not self.promote:
            return "refused"
        return "promoted (forced)" if self.forced else "promoted"

    def set_lines(self) -> list[str]:
        """Per gate set: its name and sizes, then one line per compared head."""
        lines = []
        for gate_set in self.sets:
            sizes = ", ".join(f"{h} {n:,}" for h, n in gate_set.get("sizes", {}).items())
            lines.append(f"set: {gate_set['name']} ({sizes or 'no labelled'} leads)")
            if gate_set.get("note"):
                lines.append(f"  {gate_set['note']}")
            lines += ["  " + describe_comparison(comp) for comp in gate_set.get("heads", [])]
        return lines

    def summary(self) -> str:
        """One line: verdict, then per set and head the macro-F1s and the difference."""
        parts = [self.verdict]
        if self.task_differences:
            parts.append("different task: " + "; ".join(self.task_differences))
        for gate_set in self.sets:
            heads = [_short_comparison(comp) for comp in gate_set.get("heads", [])]
            if heads:
                parts.append(f"{gate_set['name']}: " + "; ".join(heads))
            elif gate_set.get("note"):
                parts.append(f"{gate_set['name']}: {gate_set['note']}")
        return " • ".join(parts)


def _f(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _interval_text(interval: Any, sign: str = "") -> str:
    """`` [lo, hi]`` to three places (``sign="+"``: signed), or "" without an interval."""
    return f" [{interval[0]:{sign}.3f}, {interval[1]:{sign}.3f}]" if interval else ""


def describe_comparison(comp: Mapping[str, Any]) -> str:
    """One head on one set in words: both macro-F1s with intervals, the difference, verdict."""
    conf = int(round(100 * float(comp.get("confidence", 0.95))))
    text = (
        f"{comp['head']}: macro-F1 {_f(comp.get('challenger'))}"
        f"{_interval_text(comp.get('challenger_interval'))}"
    )
    if comp.get("champion") is not None:
        text += (
            f" vs champion {_f(comp.get('champion'))}"
            f"{_interval_text(comp.get('champion_interval'))}; difference "
            f"{comp['difference']:+.3f}{_interval_text(comp.get('difference_interval'), '+')}"
        )
    text += f" ({conf}% intervals, {comp.get('n', 0):,} leads): {comp.get('verdict', '')}"
    return text


def _short_comparison(comp: Mapping[str, Any]) -> str:
    if comp.get("champion") is None:
        return f"{comp['head']} {_f(comp.get('challenger'))} (n={comp.get('n', 0)})"
    return (
        f"{comp['head']} {_f(comp.get('challenger'))} vs {_f(comp.get('champion'))} "
        f"(Δ {comp['difference']:+.3f}{_interval_text(comp.get('difference_interval'), '+')}, "
        f"{comp.get('verdict', '')}, n={comp.get('n', 0)})"
    )


@dataclass(frozen=True)
class AliasMove:
    """One move of an alias: ``alias`` went from ``from_version`` to ``to_version``."""

    model_name: str
    alias: str
    from_version: str | None
    to_version: str | None
    by: str
    at: str
    why: str
    gate: str | None = None
    forced: bool = False


def gate(
    challenger_metrics: Mapping[str, Mapping[str, Any]],
    champion_metrics: Mapping[str, Mapping[str, Any]] | None,
    *,
    f1_tolerance: float = 0.01,
    recall_margin: float = 0.05,
    comparisons: Mapping[str, Mapping[str, Any]] | None = None,
    can_refuse: Mapping[str, bool] | None = None,
    set_name: str | None = None,
) -> GateDecision:
    """Decide whether a challenger may replace the champion."""
    from training.evaluate import HEADS

    if not champion_metrics:
        return GateDecision(True, ["no champion yet: the first version is promoted"])
    reasons: list[str] = []
    ok = True
    where = f"{set_name}, " if set_name else ""

    def fail(head: str, text: str) -> None:
        nonlocal ok
        if can_refuse is not None and not can_refuse.get(head, True):
            reasons.append(f"{where}{text} (too few leads to refuse on: reported only)")
        else:
            ok = False
            reasons.append(f"{where}{text}")

    for head in HEADS:
        comp = (comparisons or {}).get(head) or {}
        chall, champ = challenger_metrics.get(head), champion_metrics.get(head)
        findings = _head_findings(
            head, chall, champ, comp, f1_tolerance=f1_tolerance, recall_margin=recall_margin
        )
        for kind, text in findings:
            if kind == "check":
                fail(head, text)
            else:
                ok = ok and kind != "refuse"
                reasons.append(f"{where}{text}")
    return GateDecision(ok, reasons)


def _head_findings(
    head: str,
    chall: Mapping[str, Any] | None,
    champ: Mapping[str, Any] | None,
    comp: Mapping[str, Any],
    *,
    f1_tolerance: float,
    recall_margin: float,
) -> list[tuple[str, str]]:
    """What the gate finds on one head, in order: ``("ok", text)`` says, ``("refuse", text)``
    refuses, ``("check", text)`` refuses unless the set has too few leads to refuse on. One
    check after the other, each a few lines of wording, in the order a reader is told them."""
    if not champ or champ.get("n", 0) == 0:
        if chall and chall.get("n", 0) and not chall.get("missing_head"):
            return [("ok", f"{head}: the champion has no {head} head to compare with")]
        return []
    if champ.get("missing_head"):
        return [("ok", f"{head}: the champion has no {head} head; nothing to match")]
    if not chall or chall.get("missing_head") or chall.get("n", 0) == 0:
        return [("refuse", f"{head}: the challenger has no {head} head but the champion has one")]
    if chall["n"] != champ["n"]:
        rows = f"(challenger {chall['n']}, champion {champ['n']})"
        return [("refuse", f"{head}: not evaluated on the same rows {rows}")]
    noise = ""
    if interval := comp.get("difference_interval"):
        lo, hi = interval
        where = "inside" if lo <= 0.0 <= hi else "outside"
        noise = f"; difference {comp['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] {where} the noise"
    f1_new, f1_old = chall["macro_f1"], champ["macro_f1"]
    if f1_new < f1_old - f1_tolerance:
        below = f"is below the champion's {f1_old:.3f} by more than {f1_tolerance:.3f}"
        findings = [("check", f"{head}: macro-F1 {f1_new:.3f} {below}{noise}")]
    else:
        versus = f"vs champion {f1_old:.3f} (tolerance {f1_tolerance:.3f})"
        findings = [("ok", f"{head}: macro-F1 {f1_new:.3f} {versus}{noise}: ok")]
    drops = []
    for label, old in champ.get("per_class", {}).items():
        if old.get("support", 0) == 0:
            continue
        new = chall.get("per_class", {}).get(label, {}).get("recall", 0.0)
        if new < old["recall"] - recall_margin:
            drops.append(f"{label!r} {old['recall']:.3f} → {new:.3f}")
    if drops:
        text = f"{head}: recall drops by more than {recall_margin:.3f} for " + ", ".join(drops)
        findings.append(("check", text))
    else:
        findings.append(("ok", f"{head}: no class's recall drops by more than {recall_margin:.3f}"))
    return findings


# -- the registry ----------------------------------------------------------------------


def _client(client: Any | None) -> Any:
    """``client``, else the one client of the configured registry (opened once)."""
    return client if client is not None else _registry.registry_client()


def current_version(model_name: str, alias: str, *, client: Any | None = None) -> str | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    found = _aliased(model_name, alias, _client(client))
    return None if found is None else str(found.version)


def _aliased(model_name: str, alias: str, client: Any) -> Any | None:
    """The model version (with its tags) an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def _check_version(model_name: str, version: str, client: Any) -> Any:
    """The model version (with its tags); ValueError listing the versions that exist
    if there is no such version."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException:
        try:
            found = client.search_model_versions(f"name = '{model_name}'")
        except MlflowException:
            found = []
        versions = sorted((int(v.version) for v in found), reverse=True)
        listed = ", ".join(str(v) for v in versions) if versions else "none"
        raise ValueError(
            f"model {model_name!r} has no version {version!r} (versions: {listed})"
        ) from None


def _now() -> str:
    return utc_now().isoformat(timespec="microseconds")


def move_alias(
    model_name: str,
    alias: str,
    version: str | None,
    *,
    by: str,
    why: str,
    client: Any | None = None,
    gate: str | None = None,
    forced: bool = False,
) -> AliasMove:
    """Point ``alias`` at ``version`` (None deletes it) and record the move."""
    client = _client(client)
    before = current_version(model_name, alias, client=client)
    return _move(model_name, alias, before, version, by, why, client, gate, forced)


def _move(
    model_name: str,
    alias: str,
    before: str | None,
    version: str | None,
    by: str,
    why: str,
    client: Any,
    gate: str | None = None,
    forced: bool = False,
) -> AliasMove:
    """:func:`move_alias` from ``before``, the version the alias points at now."""
    move = AliasMove(
        model_name=model_name,
        alias=alias,
        from_version=before,
        to_version=None if version is None else str(version),
        by=by,
        at=_now(),
        why=why,
        gate=None if gate is None else gate[:3000],
        forced=forced,
    )
    if version is None:
        if before is None:
            return move
        client.delete_registered_model_alias(model_name, alias)
        tagged = before
    else:
        client.set_registered_model_alias(model_name, alias, str(version))
        tagged = str(version)
    stamp = move.at.replace(":", "").replace("-", "").replace("+0000", "Z")
    client.set_model_version_tag(
        model_name, tagged, f"{ALIAS_MOVE_TAG}.{alias}.{stamp}", json.dumps(asdict(move))
    )
    return move


def alias_moves(model_name: str, *, client: Any | None = None) -> list[AliasMove]:
    """Every recorded alias move of a registered model, oldest first."""
    client = _client(client)
    moves = []
    for mv in client.search_model_versions(f"name = '{model_name}'"):
        for key, value in (mv.tags or {}).items():
            if key.startswith(f"{ALIAS_MOVE_TAG}."):
                data = json.loads(value)
                known = AliasMove.__dataclass_fields__
                moves.append(AliasMove(**{k: v for k, v in data.items() if k in known}))
    return sorted(moves, key=lambda m: m.at)


def promote(
    version: str | int,
    *,
    model_name: str,
    by: str,
    why: str = "promoted by hand",
    client: Any | None = None,
    gate: str | None = None,
    forced: bool = False,
) -> list[AliasMove]:
    """Make ``version`` the champion; the current champion becomes ``previous_champion``."""
    client = _client(client)
    version = str(version)
    # Each version and alias is read once (with its tags): every read is a round trip.
    target = _check_version(model_name, version, client)
    champion = _aliased(model_name, CHAMPION, client)
    current = None if champion is None else str(champion.version)
    if current == version:
        return []
    if gate is None:
        differences = _tagged_task_differences(champion, target)
        if differences and not forced:
            raise ValueError(
                f"version {version} of {model_name!r} does another task than the champion "
                f"(version {current}): " + "; ".join(differences) + ". Register it under its "
                "own name (--model-name), or replace the champion's task on purpose with --force"
            )
        said = (target.tags or {}).get(GATE_SUMMARY_TAG)
        before = f"the gate had said: {said}" if said else "the version was never gated"
        gate = f"no gate for this move (by hand); {before}"
        forced = bool(differences)
        if differences:
            gate = "forced over a task change: " + "; ".join(differences) + f" • {gate}"
    moves = []
    if current is not None:
        replaced = f"replaced by version {version}: {why}"
        moves.append(
            move_alias(model_name, PREVIOUS_CHAMPION, current, by=by, why=replaced, client=client)
        )
    client.set_model_version_tag(model_name, version, PROMOTED_FROM_TAG, current or "")
    moves.append(_move(model_name, CHAMPION, current, version, by, why, client, gate, forced))
    return moves


def _tagged_task_differences(champion: Any | None, target: Any) -> list[str]:
    """Task differences of two versions from their registry tags (empty if either has none)."""
    from model.task import task_from_tags

    if champion is None:
        return []
    old = task_from_tags(champion.tags or {})
    new = task_from_tags(target.tags or {})
    if old is None or new is None:
        return []
    return old.differences(new)


def rollback(
    *,
    model_name: str,
    by: str,
    why: str = "rolled back by hand",
    client: Any | None = None,
) -> list[AliasMove]:
    """Point ``champion`` back at ``previous_champion``."""
    client = _client(client)
    aliased = _aliased(model_name, PREVIOUS_CHAMPION, client)
    if aliased is None:
        raise ValueError(f"model {model_name!r} has no previous champion to roll back to")
    previous = str(aliased.version)
    current = current_version(model_name, CHAMPION, client=client)
    why_from = f"rollback from version {current}: {why}"
    moves = [_move(model_name, CHAMPION, current, previous, by, why_from, client)]
    if current is not None:
        client.set_model_version_tag(
            model_name, current, "leadready.rolled_back", json.dumps({"by": by, "at": _now()})
        )
    before = (aliased.tags or {}).get(PROMOTED_FROM_TAG) or None
    why_to = f"rollback to version {previous}: {why}"
    moves.append(_move(model_name, PREVIOUS_CHAMPION, previous, before, by, why_to, client))
    return moves


@dataclass(frozen=True)
class GateSet:
    """Leads the gate compares on."""

    name: str
    X: pd.DataFrame
    y_stage: pd.Series | None
    y_persona: pd.Series | None
    champion_inputs: Callable[[Any], pd.DataFrame] | None = None
    min_refuse: int = 0

    def labels(self, head: str) -> pd.Series | None:
        y = {"stage": self.y_stage, "persona": self.y_persona}[head]
        return None if y is None else y.dropna()


def _predict(model: Any, X: pd.DataFrame, gate_set: GateSet) -> tuple[dict, dict]:
    """(metrics per head as ``evaluate_heads``, predicted labels per head on the labelled rows)."""
    from training.evaluate import evaluate_heads, predict_heads

    predictions = predict_heads(model, X)
    y_stage, y_persona = gate_set.y_stage, gate_set.y_persona
    metrics = evaluate_heads(model, X, y_stage, y_persona, predictions=predictions)
    labels: dict[str, Any] = {}
    for head, found in metrics.items():
        found.pop("slices", None)
        if head in predictions:
            pred = predictions[head]
            # The label the model gives (its decision rule), as head_metrics scores it.
            labels[head] = pred.predicted[pred.index.get_indexer(gate_set.labels(head).index)]
    return metrics, labels


def _missing_inputs(champion: Any, frame: pd.DataFrame) -> list[str]:
    present = {str(c) for c in frame.columns}
    return [c for c in champion.input_columns if c not in present]


def run_gate(
    *,
    model_name: str,
    challenger_version: str,
    sets: Sequence[GateSet],
    run_id: str | None = None,
    challenger: Any | None = None,
    f1_tolerance: float = 0.01,
    recall_margin: float = 0.05,
    by: str = "leadready train",
    client: Any | None = None,
    force: bool = False,
    seed: int = 0,
) -> tuple[GateDecision, dict[str, Any]]:
    """Compare challenger and champion on the same leads (``sets``, the first one's metrics
    returned), decide, move ``champion``: the task check, each gate set (:func:`_gate_set`),
    then the decision recorded; its length is its keyword arguments, which callers pass by name."""
    from model.registry import load_model

    client = _client(client)
    challenger_version = str(challenger_version)
    if challenger is None:
        challenger, _ = load_model(f"models:/{model_name}/{challenger_version}")
    champion_version = current_version(model_name, CHAMPION, client=client)
    check = _task_check(model_name, challenger, challenger_version, champion_version, force)
    champion, differences = check.champion, check.differences
    promote_it, reasons = check.promote, list(check.reasons)
    rendered_sets: list[dict[str, Any]] = []
    first_metrics: dict[str, Any] = {"challenger": None, "champion": None}
    for position, gate_set in enumerate(sets):
        entry, chall_metrics, champ_metrics, verdict = _gate_set(
            gate_set,
            challenger,
            champion if not differences else None,
            names=(challenger_version, champion_version),
            differences=differences,
            f1_tolerance=f1_tolerance,
            recall_margin=recall_margin,
            seed=seed + position,
        )
        promote_it = promote_it and verdict.promote
        reasons.extend(verdict.reasons)
        if position == 0:
            first_metrics = {"challenger": chall_metrics, "champion": champ_metrics}
        rendered_sets.append(entry)

    decision = GateDecision(
        promote=promote_it,
        reasons=reasons,
        challenger_version=challenger_version,
        champion_version=champion_version,
        model_name=model_name,
        sets=rendered_sets,
        task_differences=differences,
        input_changes=check.input_changes,
        forced=check.forced,
        at=_now(),
    )
    if decision.promote:
        why = "passed the promotion gate" if not check.forced else "forced over a task change"
        promote(
            challenger_version,
            model_name=model_name,
            by=by,
            why=f"{why} (run {run_id})" if run_id else why,
            client=client,
            gate=decision.summary(),
            forced=check.forced,
        )
    _tag_version(client, model_name, challenger_version, decision)
    if run_id is not None:
        _log_gate(client, run_id, decision, first_metrics["challenger"], first_metrics["champion"])
    return decision, first_metrics


@dataclass(frozen=True)
class _TaskCheck:
    """Whether the champion does the challenger's task, before any scoring."""

    champion: Any | None
    promote: bool
    reasons: tuple[str, ...]
    differences: list[str]
    input_changes: dict[str, list[str]]
    forced: bool


def _task_check(
    model_name: str,
    challenger: Any,
    challenger_version: str,
    champion_version: str | None,
    force: bool,
) -> _TaskCheck:
    """Load the champion (unless the challenger is it or there is none) and compare tasks."""
    from model.registry import load_model

    if champion_version == challenger_version:
        return _TaskCheck(None, False, ("this version already is the champion",), [], {}, False)
    if champion_version is None:
        reason = "no champion yet: the first version is promoted"
        return _TaskCheck(None, True, (reason,), [], {}, False)
    champion, _ = load_model(f"models:/{model_name}/{champion_version}")
    differences = champion.task.differences(challenger.task)
    input_changes = champion.task.input_changes(challenger.task)
    if differences and not force:
        reason = (
            f"the challenger (version {challenger_version}) does another task than the "
            f"champion (version {champion_version}) of {model_name!r}: "
            + "; ".join(differences)
            + ". Register it under its own name (--model-name NAME or "
            "LEADREADY_MODEL_NAME=NAME), or replace the champion's task on purpose "
            "with --force (recorded in the alias history)"
        )
        return _TaskCheck(champion, False, (reason,), differences, input_changes, False)
    if differences:
        reason = "forced over a task change (--force): " + "; ".join(differences)
        return _TaskCheck(champion, True, (reason,), differences, input_changes, True)
    return _TaskCheck(champion, True, (), differences, input_changes, False)


def _score_champion(
    gate_set: GateSet, champion: Any
) -> tuple[dict[str, Any] | None, dict[str, Any], str | None]:
    """The champion's metrics and labels on a gate set from its own inputs, or (None, {},
    the input columns it lacks, in words) when it cannot be scored there."""
    frame = (
        gate_set.champion_inputs(champion) if gate_set.champion_inputs is not None else gate_set.X
    )
    missing = _missing_inputs(champion, frame) if frame is not None else ["(all)"]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        return None, {}, f"{shown}{more}"
    champ_metrics, champ_labels = _predict(champion, frame.reindex(gate_set.X.index), gate_set)
    return champ_metrics, champ_labels, None


def _gate_set(
    gate_set: GateSet,
    challenger: Any,
    champion: Any | None,
    *,
    names: tuple[str, str | None],
    differences: list[str],
    f1_tolerance: float,
    recall_margin: float,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None, GateDecision]:
    """Score one gate set and compare: (its rendered entry, the challenger's metrics, the
    champion's or None, the verdict on this set). ``champion`` is None when it is not
    comparable (none, or another task). Kept whole: the entry it fills is what the gate
    report renders."""
    from training.gate_stats import compare_head

    challenger_version, champion_version = names
    chall_metrics, chall_labels = _predict(challenger, gate_set.X, gate_set)
    sizes = {h: int(m.get("n", 0)) for h, m in chall_metrics.items()}
    entry: dict[str, Any] = {
        "name": gate_set.name,
        "sizes": sizes,
        "min_refuse": gate_set.min_refuse,
        "can_refuse": {h: n >= gate_set.min_refuse for h, n in sizes.items()},
        "champion_scored": False,
        "note": None,
        "heads": [],
    }
    verdict = GateDecision(promote=True, reasons=[])
    champ_metrics: dict[str, Any] | None = None
    champ_labels: dict[str, Any] = {}
    if champion is not None:
        champ_metrics, champ_labels, missing = _score_champion(gate_set, champion)
        entry["champion_scored"] = champ_metrics is not None
        if missing:
            entry["note"] = (
                f"the champion (version {champion_version}) needs input columns these "
                f"leads do not have ({missing}): it cannot be scored on them, so no "
                "champion score is computed"
            )
            verdict = GateDecision(
                promote=False,
                reasons=[
                    f"{gate_set.name}: {entry['note']}; compare by hand (leadready evaluate) "
                    f"and promote with `leadready promote {challenger_version}` if it is better"
                ],
            )
    for head, pred in chall_labels.items():
        truth = gate_set.labels(head).to_numpy(dtype=object)
        comp = compare_head(head, truth, pred, champ_labels.get(head), seed=seed)
        if differences:
            comp = replace(comp, verdict="not compared: the champion does another task")
        elif champion is not None and not entry["champion_scored"]:
            comp = replace(comp, verdict="not compared: the champion cannot be scored here")
        entry["heads"].append(comp.to_dict())
    if champ_metrics is not None:
        verdict = gate(
            chall_metrics,
            champ_metrics,
            f1_tolerance=f1_tolerance,
            recall_margin=recall_margin,
            comparisons={c["head"]: c for c in entry["heads"]},
            can_refuse=entry["can_refuse"],
            set_name=gate_set.name,
        )
        small = [h for h, ok in entry["can_refuse"].items() if not ok]
        if small:
            entry["note"] = (
                f"fewer than {gate_set.min_refuse} labelled leads for {', '.join(small)}: "
                "reported, but these leads alone cannot refuse the challenger"
            )
    return entry, chall_metrics, champ_metrics, verdict


#: Version tags: the gate's decision on a version, as one line and as JSON.
GATE_SUMMARY_TAG = _registry.GATE_SUMMARY_TAG
GATE_JSON_TAG = _registry.GATE_JSON_TAG


def _tag_version(client: Any, model_name: str, version: str, decision: GateDecision) -> None:
    """Keep the decision on the version (the Models page and ``models history`` read it)."""
    client.set_model_version_tag(model_name, version, GATE_SUMMARY_TAG, decision.summary()[:4900])
    # The reasons cut short: the whole list is in the run's ``gate/decision.json``.
    reasons = [r[:300] for r in decision.reasons[:12]]
    text = json.dumps({**decision.to_dict(), "reasons": reasons})
    if len(text) <= 4900:
        client.set_model_version_tag(model_name, version, GATE_JSON_TAG, text)


def gate_decision_of(
    model_name: str, version: str, *, client: Any | None = None
) -> GateDecision | None:
    """The gate's decision on a version, as kept in its tags (None when not gated)."""
    from mlflow.exceptions import MlflowException

    client = _client(client)
    try:
        tags = client.get_model_version(model_name, str(version)).tags or {}
    except MlflowException:
        return None
    text = tags.get(GATE_JSON_TAG)
    if text:
        try:
            return GateDecision.from_dict(json.loads(text))
        except (ValueError, TypeError):
            pass
    if tags.get(GATE_SUMMARY_TAG):
        return GateDecision(
            promote=tags[GATE_SUMMARY_TAG].startswith("promoted"),
            reasons=[tags[GATE_SUMMARY_TAG]],
            challenger_version=str(version),
            model_name=model_name,
        )
    return None


def _log_gate(
    client: Any,
    run_id: str,
    decision: GateDecision,
    challenger_metrics: Mapping[str, Any] | None,
    champion_metrics: Mapping[str, Any] | None,
) -> None:
    """Log the decision and both metric sets into the challenger's run."""
    import mlflow

    from training.evaluate import flatten_metrics, metric_key

    metrics = {"gate_promote": 1.0 if decision.promote else 0.0}
    if decision.champion_version is not None:
        metrics["gate_champion_version"] = float(decision.champion_version)
    if challenger_metrics:
        metrics.update(flatten_metrics(challenger_metrics, prefix="gate_challenger_"))
    if champion_metrics:
        metrics.update(flatten_metrics(champion_metrics, prefix="gate_champion_"))
    for gate_set in decision.sets:
        prefix = metric_key("gate", gate_set["name"])
        for head, n in gate_set.get("sizes", {}).items():
            metrics[f"{prefix}_{head}_n"] = float(n)
        for comp in gate_set.get("heads", []):
            key = f"{prefix}_{comp['head']}"
            for name in ("difference_interval", "challenger_interval", "champion_interval"):
                interval = comp.get(name)
                if interval:
                    metrics[f"{key}_{name}_lo"] = float(interval[0])
                    metrics[f"{key}_{name}_hi"] = float(interval[1])
            if comp.get("difference") is not None:
                metrics[f"{key}_difference"] = float(comp["difference"])
    mlflow.log_metrics(metrics, run_id=run_id)
    client.set_tag(run_id, "gate.decision", "promoted" if decision.promote else "refused")
    client.set_tag(run_id, "leadready.gate_set", " + ".join(s["name"] for s in decision.sets))
    client.set_tag(run_id, "leadready.gate_summary", decision.summary()[:4900])
    mlflow.log_dict(
        {
            "decision": decision.to_dict(),
            "lines": decision.set_lines(),
            "challenger": challenger_metrics,
            "champion": champion_metrics,
        },
        "gate/decision.json",
        run_id=run_id,
    )


def inputs_from_table(
    leads_path: Any, fallback: pd.DataFrame, **table: Any
) -> Callable[[Any], pd.DataFrame]:
    """``champion_inputs`` for :func:`run_gate`: the champion's own columns from the same table
    (``table``: the :func:`~training.dataset.load_training_table` keywords that name and read
    it: events, id and label columns, ``as_of``, ``max_rows``, ``seed``)."""

    def build(champion: Any) -> pd.DataFrame:
        import pandas as pd

        if not _missing_inputs(champion, fallback):
            return fallback
        from model.features import FeatureConfig
        from training.dataset import load_training_table

        config = champion.feature_config or FeatureConfig()
        try:
            full = load_training_table(
                leads_path, **table, exclude=(), slice_cols=(), feature_config=config
            )
        except (ValueError, OSError):
            return fallback
        found = fallback.index.isin(full.X.index)
        parts = [full.X.loc[fallback.index[found]]]
        if not found.all():
            parts.append(fallback.loc[~found].reindex(columns=full.X.columns))
        return pd.concat(parts).reindex(fallback.index)

    return build
