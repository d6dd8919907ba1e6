"""The promotion gate, and moving the ``champion`` alias by hand or back.

A challenger becomes champion only if, on the same gate set, it is no worse
than the champion: each head's macro-F1 within a tolerance, and no class's
recall down by more than a margin. The first version is promoted when there is
no champion. Every alias move is recorded as a tag on the model version that
receives it (who, when, why, from which version), and a promoted version
remembers the champion it replaced (tag ``leadready.promoted_from``), so
:func:`rollback` can walk back one champion at a time.

MLflow must already point at the right tracking server
(``model.registry.configure``); the functions take the registered model name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

# training.evaluate (scikit-learn's metrics) and pandas are imported by the functions
# that use them: `leadready promote` and `rollback` only move an alias.
if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS_CHAMPION",
    "AliasMove",
    "GateDecision",
    "alias_moves",
    "current_version",
    "gate",
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
ALIAS_MOVE_TAG = "leadready.alias_move"


@dataclass(frozen=True)
class GateDecision:
    """The gate's answer: promote or not, and every check that led there."""

    promote: bool
    reasons: list[str] = field(default_factory=list)
    challenger_version: str | None = None
    champion_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


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


def gate(
    challenger_metrics: Mapping[str, Mapping[str, Any]],
    champion_metrics: Mapping[str, Mapping[str, Any]] | None,
    *,
    f1_tolerance: float = 0.01,
    recall_margin: float = 0.05,
) -> GateDecision:
    """Decide whether a challenger may replace the champion.

    Parameters
    ----------
    challenger_metrics, champion_metrics : dict
        Outputs of :func:`training.evaluate.evaluate_heads` on the *same* gate
        set. ``champion_metrics`` is None when there is no champion.
    f1_tolerance : float, default 0.01
        How far below the champion's macro-F1 a head may be.
    recall_margin : float, default 0.05
        How far below the champion's recall any class may drop.

    Returns
    -------
    GateDecision
        ``promote`` is True only if every check passes; ``reasons`` lists each
        check, passed or failed, in words.
    """
    from training.evaluate import HEADS

    if not champion_metrics:
        return GateDecision(True, ["no champion yet: the first version is promoted"])
    reasons: list[str] = []
    ok = True
    for head in HEADS:
        champ = champion_metrics.get(head)
        chall = challenger_metrics.get(head)
        if not champ or champ.get("n", 0) == 0:
            if chall and chall.get("n", 0) and not chall.get("missing_head"):
                reasons.append(f"{head}: the champion has no {head} head to compare with")
            continue
        if champ.get("missing_head"):
            reasons.append(f"{head}: the champion has no {head} head; nothing to match")
            continue
        if not chall or chall.get("missing_head") or chall.get("n", 0) == 0:
            ok = False
            reasons.append(f"{head}: the challenger has no {head} head but the champion has one")
            continue
        if chall["n"] != champ["n"]:
            ok = False
            reasons.append(
                f"{head}: not evaluated on the same rows "
                f"(challenger {chall['n']}, champion {champ['n']})"
            )
            continue
        f1_new, f1_old = chall["macro_f1"], champ["macro_f1"]
        if f1_new < f1_old - f1_tolerance:
            ok = False
            reasons.append(
                f"{head}: macro-F1 {f1_new:.3f} is below the champion's {f1_old:.3f} "
                f"by more than {f1_tolerance:.3f}"
            )
        else:
            reasons.append(
                f"{head}: macro-F1 {f1_new:.3f} vs champion {f1_old:.3f} "
                f"(tolerance {f1_tolerance:.3f}): ok"
            )
        drops = []
        for label, old in champ.get("per_class", {}).items():
            if old.get("support", 0) == 0:
                continue
            new = chall.get("per_class", {}).get(label, {}).get("recall", 0.0)
            if new < old["recall"] - recall_margin:
                drops.append(f"{label!r} {old['recall']:.3f} → {new:.3f}")
        if drops:
            ok = False
            reasons.append(
                f"{head}: recall drops by more than {recall_margin:.3f} for " + ", ".join(drops)
            )
        else:
            reasons.append(f"{head}: no class's recall drops by more than {recall_margin:.3f}")
    return GateDecision(ok, reasons)


# -- the registry ----------------------------------------------------------------------


def _client(client: Any | None) -> Any:
    if client is not None:
        return client
    from mlflow import MlflowClient

    return MlflowClient()


def current_version(model_name: str, alias: str, *, client: Any | None = None) -> str | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(client).get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def _check_version(model_name: str, version: str, client: Any) -> None:
    """Raise ValueError, listing the versions that exist, if ``version`` does not."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(model_name, str(version))
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
    return datetime.now(UTC).isoformat(timespec="microseconds")


def move_alias(
    model_name: str,
    alias: str,
    version: str | None,
    *,
    by: str,
    why: str,
    client: Any | None = None,
) -> AliasMove:
    """Point ``alias`` at ``version`` (None deletes it) and record the move.

    The record is a tag ``leadready.alias_move.<alias>.<UTC time>`` whose value
    is the JSON of the :class:`AliasMove`, on the version that receives the
    alias (or, when the alias is deleted, on the version that loses it).

    Parameters
    ----------
    model_name : str
        Registered model name.
    alias : str
        E.g. ``champion``, ``challenger``, ``previous_champion``.
    version : str or None
        The version to point at; None removes the alias.
    by : str
        Who moves it (a user name, or ``leadready train`` for the gate).
    why : str
        In words.
    client : MlflowClient, optional

    Returns
    -------
    AliasMove
    """
    client = _client(client)
    before = current_version(model_name, alias, client=client)
    move = AliasMove(
        model_name=model_name,
        alias=alias,
        from_version=before,
        to_version=None if version is None else str(version),
        by=by,
        at=_now(),
        why=why,
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
                moves.append(AliasMove(**json.loads(value)))
    return sorted(moves, key=lambda m: m.at)


def promote(
    version: str | int,
    *,
    model_name: str,
    by: str,
    why: str = "promoted by hand",
    client: Any | None = None,
) -> list[AliasMove]:
    """Make ``version`` the champion; the current champion becomes ``previous_champion``.

    Parameters
    ----------
    version : str or int
        An existing version of ``model_name``.
    model_name : str
        Registered model name.
    by, why : str
        Recorded with each alias move.
    client : MlflowClient, optional

    Returns
    -------
    list of AliasMove
        The moves made (empty when ``version`` already is the champion).

    Raises
    ------
    ValueError
        If the version does not exist.
    """
    client = _client(client)
    version = str(version)
    _check_version(model_name, version, client)
    current = current_version(model_name, CHAMPION, client=client)
    if current == version:
        return []
    moves = []
    if current is not None:
        moves.append(
            move_alias(
                model_name,
                PREVIOUS_CHAMPION,
                current,
                by=by,
                why=f"replaced by version {version}: {why}",
                client=client,
            )
        )
    client.set_model_version_tag(model_name, version, PROMOTED_FROM_TAG, current or "")
    moves.append(move_alias(model_name, CHAMPION, version, by=by, why=why, client=client))
    return moves


def rollback(
    *,
    model_name: str,
    by: str,
    why: str = "rolled back by hand",
    client: Any | None = None,
) -> list[AliasMove]:
    """Point ``champion`` back at ``previous_champion``.

    ``previous_champion`` then moves to the champion *that* version replaced
    (if any), so repeated rollbacks walk back through the champions.

    Returns
    -------
    list of AliasMove

    Raises
    ------
    ValueError
        If there is no previous champion.
    """
    client = _client(client)
    previous = current_version(model_name, PREVIOUS_CHAMPION, client=client)
    if previous is None:
        raise ValueError(f"model {model_name!r} has no previous champion to roll back to")
    current = current_version(model_name, CHAMPION, client=client)
    moves = [
        move_alias(
            model_name,
            CHAMPION,
            previous,
            by=by,
            why=f"rollback from version {current}: {why}",
            client=client,
        )
    ]
    if current is not None:
        client.set_model_version_tag(
            model_name, current, "leadready.rolled_back", json.dumps({"by": by, "at": _now()})
        )
    before = client.get_model_version(model_name, previous).tags.get(PROMOTED_FROM_TAG) or None
    moves.append(
        move_alias(
            model_name,
            PREVIOUS_CHAMPION,
            before,
            by=by,
            why=f"rollback to version {previous}: {why}",
            client=client,
        )
    )
    return moves


def run_gate(
    *,
    model_name: str,
    challenger_version: str,
    X: pd.DataFrame,
    y_stage: pd.Series | None,
    y_persona: pd.Series | None,
    run_id: str | None = None,
    challenger: Any | None = None,
    challenger_metrics: Mapping[str, Any] | None = None,
    f1_tolerance: float = 0.01,
    recall_margin: float = 0.05,
    by: str = "leadready train",
    client: Any | None = None,
) -> tuple[GateDecision, dict[str, Any]]:
    """Evaluate challenger and champion on the same gate set, decide, move ``champion``.

    Parameters
    ----------
    model_name : str
        Registered model name.
    challenger_version : str
        The registered version under test.
    X : DataFrame
        The gate set's feature rows (e.g. the training holdout), indexed by lead id.
    y_stage, y_persona : Series or None
        The gate set's labels.
    run_id : str, optional
        The challenger's MLflow run: the decision, ``gate_*`` metrics and
        ``gate/decision.json`` are logged there.
    challenger : LeadReadinessModel, optional
        The challenger in memory; loaded from the registry when omitted.
    challenger_metrics : dict, optional
        The challenger's :func:`~training.evaluate.evaluate_heads` output on
        exactly these rows, when already computed (it is not recomputed).
    f1_tolerance, recall_margin : float
        See :func:`gate`.
    by : str
        Recorded with the alias move.
    client : MlflowClient, optional

    Returns
    -------
    (GateDecision, dict)
        The decision and ``{"challenger": metrics, "champion": metrics or None}``.
    """
    from model.registry import load_model
    from training.evaluate import evaluate_heads

    client = _client(client)
    challenger_version = str(challenger_version)
    if challenger_metrics is None:
        if challenger is None:
            challenger, _ = load_model(f"models:/{model_name}/{challenger_version}")
        challenger_metrics = evaluate_heads(challenger, X, y_stage, y_persona)
    champion_version = current_version(model_name, CHAMPION, client=client)
    champion_metrics: dict[str, Any] | None = None
    if champion_version is None:
        decision = gate(challenger_metrics, None)
    elif champion_version == challenger_version:
        decision = GateDecision(False, ["this version already is the champion"])
    else:
        champion, _ = load_model(f"models:/{model_name}/{champion_version}")
        try:
            champion_metrics = evaluate_heads(champion, X, y_stage, y_persona)
        except (KeyError, ValueError) as exc:
            decision = GateDecision(
                False,
                [
                    f"the champion (version {champion_version}) cannot score this gate set "
                    f"({exc}); compare by hand and use `leadready promote`"
                ],
            )
        else:
            decision = gate(
                challenger_metrics,
                champion_metrics,
                f1_tolerance=f1_tolerance,
                recall_margin=recall_margin,
            )
    decision = GateDecision(
        decision.promote, decision.reasons, challenger_version, champion_version
    )
    if decision.promote:
        promote(
            challenger_version,
            model_name=model_name,
            by=by,
            why="passed the promotion gate: " + "; ".join(decision.reasons),
            client=client,
        )
    if run_id is not None:
        _log_gate(client, run_id, decision, challenger_metrics, champion_metrics)
    return decision, {"challenger": challenger_metrics, "champion": champion_metrics}


def _log_gate(
    client: Any,
    run_id: str,
    decision: GateDecision,
    challenger_metrics: Mapping[str, Any],
    champion_metrics: Mapping[str, Any] | None,
) -> None:
    """Log the decision and both metric sets into the challenger's run."""
    import mlflow

    from training.evaluate import flatten_metrics

    metrics = {"gate_promote": 1.0 if decision.promote else 0.0}
    if decision.champion_version is not None:
        metrics["gate_champion_version"] = float(decision.champion_version)
    metrics.update(flatten_metrics(challenger_metrics, prefix="gate_challenger_"))
    if champion_metrics:
        metrics.update(flatten_metrics(champion_metrics, prefix="gate_champion_"))
    mlflow.log_metrics(metrics, run_id=run_id)
    client.set_tag(run_id, "gate.decision", "promoted" if decision.promote else "refused")
    mlflow.log_dict(
        {
            "decision": decision.to_dict(),
            "challenger": challenger_metrics,
            "champion": champion_metrics,
        },
        "gate/decision.json",
        run_id=run_id,
    )
