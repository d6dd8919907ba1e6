"""Bulk scoring and feature building on Apache Spark, with the registered model.
Design notes: ``docs/design/training.md``."""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from data.values import utc_now
from model.features import FeatureConfig, build_features

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

__all__ = [
    "DEFAULT_MODEL_URI",
    "SparkScoreSummary",
    "build_features_spark",
    "local_session",
    "score_spark",
]

#: The registered champion, what :func:`score_spark` scores with by default.
DEFAULT_MODEL_URI = "models:/lead-readiness@champion"

_BUCKET = "__leadready_bucket"
_PREDICTION = "__leadready_prediction"
_EVENT_REQUIRED = ("lead_id", "timestamp", "type")
_TEXT_OUTPUTS = ("stage", "persona", "route")


@dataclass(frozen=True)
class SparkScoreSummary:
    """What a Spark scoring run did."""

    rows: int
    out_path: str
    model_uri: str
    version: str | None
    as_of: datetime | None
    seconds: float
    renamed_columns: dict[str, str] = field(default_factory=dict)
    missing_columns: list[str] = field(default_factory=list)
    routes: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- session


def local_session(
    master: str = "local[2]",
    *,
    app_name: str = "leadready",
    driver_memory: str = "4g",
    shuffle_partitions: int = 8,
    python: str | None = None,
    local_dir: str | Path | None = None,
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """A Spark session for one machine (or ``master`` of a cluster), quiet and loopback-only."""
    from pyspark.sql import SparkSession

    # PySpark reads the workers' Python from the environment only (no setting).
    os.environ["PYSPARK_PYTHON"] = python or os.environ.get("PYSPARK_PYTHON") or sys.executable
    settings: dict[str, str] = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": driver_memory,
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.worker.reuse": "true",
    }
    if master.startswith("local"):
        settings["spark.driver.host"] = "127.0.0.1"
        settings["spark.driver.bindAddress"] = "127.0.0.1"
    if local_dir is not None:
        settings["spark.local.dir"] = str(local_dir)
    settings.update(conf or {})
    spark = SparkSession.builder.master(master).appName(app_name).config(map=settings).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class _Plan:
    """How one feature job crosses between Spark and pandas (picklable, sent to workers)."""

    id_col: str
    config: FeatureConfig
    exclude: tuple[str, ...]
    as_of_ns: int
    lead_micros: tuple[str, ...]  # lead TIMESTAMP columns passed as µs since the epoch
    event_micros: tuple[str, ...]
    # Scoring: ids as score_table keeps them (text, stripped), and the output is the input
    # columns + generated ones (else build_features' row).
    keep_input: bool
    with_events: bool
    columns: tuple[str, ...] = ()  # output columns, in order (learnt by _output_fields)
    empty_dtypes: tuple[str, ...] = ()  # pandas dtypes of an empty output, per column


def _micros_to_utc(frame: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    """Turn µs-since-epoch columns back into UTC timestamps (a copy when any)."""
    names = [n for n in names if n in frame.columns]
    if not names:
        return frame
    micros = {n: pd.to_numeric(frame[n], errors="coerce") for n in names}
    return frame.assign(
        **{n: pd.to_datetime(v, unit="us", utc=True).dt.as_unit("us") for n, v in micros.items()}
    )


def _text_ids(values: pd.Series, id_col: str) -> np.ndarray:
    """Ids as score_table keeps them: text, stripped; empty ids are an error."""
    text = values.astype(object).map(lambda v: None if pd.isna(v) else str(v).strip())
    empty = int((text.isna() | (text == "")).sum())
    if empty:
        raise ValueError(f"column {id_col!r} is empty in {empty} row(s)")
    return text.to_numpy(dtype=object)


def _features_of(plan: _Plan, leads: pd.DataFrame, events: pd.DataFrame | None) -> pd.DataFrame:
    """One bucket (or partition): ``build_features`` on its leads and events, shaped for Spark."""
    leads = leads.drop(columns=[_BUCKET], errors="ignore").reset_index(drop=True)
    if len(leads) == 0:  # a bucket with events of other leads only
        dtypes = dict(zip(plan.columns, plan.empty_dtypes, strict=True))
        return pd.DataFrame(columns=list(dtypes)).astype(dtypes)
    original = leads
    work = _micros_to_utc(leads, plan.lead_micros)
    if plan.keep_input:
        work = work.assign(**{plan.id_col: _text_ids(work[plan.id_col], plan.id_col)})
    if events is not None:
        events = _micros_to_utc(
            events.drop(columns=[_BUCKET], errors="ignore").reset_index(drop=True),
            plan.event_micros,
        )
        if plan.keep_input:
            events = events.assign(lead_id=events["lead_id"].astype(str))
    # Called here, not through a helper: a worker's error reaches the user as the first
    # lines of its traceback, and each frame more pushes the message itself out.
    features = build_features(
        work,
        events if plan.with_events else None,
        as_of=pd.Timestamp(plan.as_of_ns, unit="ns", tz="UTC"),
        config=plan.config,
        id_col=plan.id_col,
        exclude=plan.exclude,
    ).reset_index(drop=True)
    if plan.keep_input:
        generated = [c for c in plan.columns if c not in original.columns]
        out = pd.concat([original, features[generated]], axis=1)
    else:
        out = features
        out.insert(0, plan.id_col, original[plan.id_col].to_numpy())
    if tuple(out.columns) != plan.columns:
        raise ValueError(
            f"feature columns changed between the schema probe and a bucket: "
            f"{list(out.columns)} != {list(plan.columns)}"
        )
    return _arrow_safe(out)


def _arrow_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """pandas 3 text columns as object columns (None for missing) for PySpark's Arrow writer."""
    text = [c for c in frame.columns if isinstance(frame[c].dtype, pd.StringDtype | pd.ArrowDtype)]
    if not text:
        return frame
    return frame.assign(**{c: frame[c].astype(object).where(frame[c].notna(), None) for c in text})


def _features_of_batches(plan: _Plan, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """:func:`_features_of` over a partition's batches of leads (no events)."""
    for leads in batches:
        yield _features_of(plan, leads, None)


def _is_ltz(data_type: DataType) -> bool:
    from pyspark.sql.types import TimestampType

    return type(data_type) is TimestampType


def _is_ntz(data_type: DataType) -> bool:
    from pyspark.sql.types import TimestampNTZType

    return isinstance(data_type, TimestampNTZType)


def _to_micros(frame: DataFrame) -> tuple[DataFrame, tuple[str, ...]]:
    """Replace every TIMESTAMP (with time zone) column by µs since the epoch."""
    from pyspark.sql import functions as F

    names = tuple(f.name for f in frame.schema.fields if _is_ltz(f.dataType))
    for name in names:
        frame = frame.withColumn(name, F.unix_micros(F.col(_quoted(name))))
    return frame, names


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _probe_frame(schema: StructType, micros: Iterable[str], rows: int) -> pd.DataFrame:
    """A frame of ``rows`` missing values shaped like what a worker sees of ``schema``."""
    micros = set(micros)
    columns: dict[str, pd.Series] = {}
    for f in schema.fields:
        if f.name == _BUCKET:
            continue
        if f.name in micros:
            dtype = "datetime64[us, UTC]"
        elif _is_ntz(f.dataType):
            dtype = "datetime64[us]"
        else:
            dtype = object
        columns[f.name] = pd.Series([None] * rows, dtype=dtype)
    return pd.DataFrame(columns)


def _empty_dtype(data_type: DataType) -> str:
    """The pandas dtype an empty output column of this Spark type is given."""
    from pyspark.sql.types import BooleanType, FractionalType, IntegralType

    if _is_ntz(data_type):
        return "datetime64[us]"
    if isinstance(data_type, IntegralType):
        return "int64"
    if isinstance(data_type, FractionalType):
        return "float64"
    if isinstance(data_type, BooleanType):
        return "bool"
    return "object"


def _spark_type(dtype: Any) -> DataType:
    from pyspark.sql.types import DoubleType, LongType, StringType

    if pd.api.types.is_integer_dtype(dtype):
        return LongType()
    if pd.api.types.is_float_dtype(dtype):
        return DoubleType()
    return StringType()


def _check_events(events: DataFrame) -> None:
    missing = [c for c in _EVENT_REQUIRED if c not in events.columns]
    if missing:
        raise ValueError(f"events lack the column(s) {missing}")
    timestamp = events.schema["timestamp"].dataType
    if not (_is_ltz(timestamp) or _is_ntz(timestamp)):
        raise ValueError(
            f"events: column 'timestamp' must be a Spark timestamp, not {timestamp.simpleString()}; "
            "convert it first, e.g. with pyspark.sql.functions.to_timestamp"
        )


def _latest_event_ns(events: DataFrame) -> int | None:
    """The latest event timestamp in ns since the epoch (TIMESTAMP_NTZ read as UTC)."""
    from pyspark.sql import functions as F

    column = F.col("timestamp")
    if _is_ntz(events.schema["timestamp"].dataType):
        latest = events.agg(F.max(column).alias("t")).first()["t"]
        if latest is None:
            return None
        return int(pd.Timestamp(latest, tz="UTC").as_unit("ns").value)
    latest = events.agg(F.max(F.unix_micros(column)).alias("t")).first()["t"]
    return None if latest is None else int(latest) * 1000


def _as_of_ns(as_of: object | None, events: DataFrame | None) -> int:
    """``as_of`` in ns since the epoch; by default the latest event, else now."""
    if as_of is not None:
        stamp = pd.Timestamp(as_of)
        if stamp is pd.NaT:
            raise ValueError(f"as_of must be a timestamp, got {as_of!r}")
        if stamp.tzinfo is None:
            stamp = stamp.tz_localize("UTC")
        return int(stamp.as_unit("ns").value)
    latest = None if events is None else _latest_event_ns(events)
    if latest is not None:
        return latest
    return int(pd.Timestamp(utc_now()).as_unit("ns").value)


def _output_fields(leads_x: DataFrame, events_x: DataFrame | None, plan: _Plan) -> list[Any]:
    """The Spark fields of the feature job's output, learnt by running the real code."""
    from pyspark.sql.types import StructField

    # Probe: run the real code on one lead of missing values (build_features needs
    # a lead) and no events, shaped like the workers' input, to learn the columns.
    probe_leads = _probe_frame(leads_x.schema, plan.lead_micros, 1)
    probe_events = None
    if events_x is not None:
        probe_events = _probe_frame(events_x.schema, plan.event_micros, 0)
    probe = build_features(
        probe_leads,
        probe_events,
        as_of=pd.Timestamp(plan.as_of_ns, unit="ns", tz="UTC"),
        config=plan.config,
        id_col=plan.id_col,
        exclude=plan.exclude,
    )
    input_fields = {f.name: f for f in leads_x.schema.fields}
    generated = [
        StructField(name, _spark_type(probe[name].dtype), True)
        for name in probe.columns
        if name not in input_fields
    ]
    if plan.keep_input:
        return [*leads_x.schema.fields, *generated]
    own = [input_fields[name] for name in probe.columns if name in input_fields]
    return [input_fields[plan.id_col], *own, *generated]


def _featurize(
    leads: DataFrame,
    events: DataFrame | None,
    *,
    as_of_ns: int,
    config: FeatureConfig,
    id_col: str,
    exclude: tuple[str, ...],
    buckets: int | None,
    keep_input: bool,
) -> DataFrame:
    """The Spark plan of the feature job (lazy: nothing runs until it is written or collected):
    the plan the workers run with its output fields, then one map or a bucketed cogroup with
    events (the callers have checked the events and the id column)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType

    leads_x, lead_micros = _to_micros(leads)
    events_x, event_micros = _to_micros(events) if events is not None else (None, ())

    plan = _Plan(
        id_col=id_col,
        config=config,
        exclude=exclude,
        as_of_ns=as_of_ns,
        lead_micros=lead_micros,
        event_micros=event_micros,
        keep_input=keep_input,
        with_events=events is not None,
    )
    fields = _output_fields(leads_x, events_x, plan)
    schema = StructType(fields)
    columns = tuple(f.name for f in fields)
    dtypes = tuple(_empty_dtype(f.dataType) for f in fields)
    plan = replace(plan, columns=columns, empty_dtypes=dtypes)

    if events_x is None:
        out = leads_x.mapInPandas(functools.partial(_features_of_batches, plan), schema)
    else:
        n = buckets or int(leads.sparkSession.conf.get("spark.sql.shuffle.partitions"))
        if n < 1:
            raise ValueError(f"buckets must be at least 1, got {n}")

        def bucket(column: str) -> Any:
            key = F.trim(F.col(_quoted(column)).cast("string"))
            return F.pmod(F.xxhash64(key), F.lit(n))

        left = leads_x.withColumn(_BUCKET, bucket(id_col)).groupBy(_BUCKET)
        right = events_x.withColumn(_BUCKET, bucket("lead_id")).groupBy(_BUCKET)
        out = left.cogroup(right).applyInPandas(functools.partial(_features_of, plan), schema)
    if keep_input:
        for name in lead_micros:
            out = out.withColumn(name, F.timestamp_micros(F.col(_quoted(name))))
    return out


def build_features_spark(
    leads: DataFrame,
    events: DataFrame | None = None,
    *,
    as_of: object = None,
    config: FeatureConfig = FeatureConfig(),  # noqa: B008
    id_col: str = "lead_id",
    exclude: Iterable[str] = (),
    buckets: int | None = None,
) -> DataFrame:
    """One feature row per lead on Spark: ``model.features.build_features``, bucket by bucket."""
    from pyspark.sql import functions as F

    if events is not None:
        _check_events(events)
    if id_col not in leads.columns:
        raise ValueError(f"leads lack the id column {id_col!r}")
    # The default as_of is the latest event of these leads.
    ids = leads.select(F.col(_quoted(id_col)).alias("lead_id"))
    ours = None if events is None else events.join(ids, on="lead_id", how="left_semi")
    return _featurize(
        leads,
        events,
        as_of_ns=_as_of_ns(as_of, ours),
        config=config,
        id_col=id_col,
        exclude=tuple(exclude),
        buckets=buckets,
        keep_input=False,
    )


# --------------------------------------------------------------------------- scoring


def _result_type(columns: Iterable[str]) -> StructType:
    """The UDF's struct: labels, routes and reasons as text, every other output a double."""
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    def kind(name: str) -> Any:
        return StringType() if name in _TEXT_OUTPUTS or name.endswith("_reasons") else DoubleType()

    return StructType([StructField(name, kind(name), True) for name in columns])


def _is_local(path: str) -> bool:
    scheme = urlparse(path).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def _local_path(path: str) -> Path:
    parsed = urlparse(path)
    return Path(parsed.path if parsed.scheme == "file" else path)


def _check_parquet(path: str, what: str) -> None:
    suffix = Path(urlparse(path).path).suffix.lower()
    if suffix in (".csv", ".tsv", ".json", ".jsonl", ".ndjson"):
        raise ValueError(
            f"{what} {path}: the Spark engine reads and writes Parquet only "
            "(files or folders); convert it, or score it with the local engine"
        )


def crm_columns_spark_cannot_read(
    metadata: Mapping[str, Any] | None, column_types: Mapping[str, str]
) -> list[str]:
    """Input columns a model reads as a person would (``"$4,365,000"`` → a number, a
    date in its training column's order: ``metadata["column_types"]``, set when it
    was trained on a CRM export) that the Parquet input holds as text."""
    meta = metadata or {}
    out = []
    for name, spec in (meta.get("column_types") or {}).items():
        kind = (spec or {}).get("kind")
        if kind not in (None, "text") and column_types.get(name) == "string":
            out.append(f"{name!r} ({kind}, held as text)")
    title = meta.get("title_column")
    if title and title in column_types and "job_title" not in column_types:
        out.append(f"{title!r} (the job titles)")
    return out


def _check_paths(in_path: str, out_path: str, events_path: str | Path | None) -> None:
    """Refuse paths that are not Parquet, and an output that would overwrite the input."""
    _check_parquet(in_path, "input")
    _check_parquet(out_path, "output")
    if events_path is not None:
        _check_parquet(str(events_path), "events")
    if (
        _is_local(in_path)
        and _is_local(out_path)
        and _local_path(out_path).resolve() == _local_path(in_path).resolve()
    ):
        raise ValueError(f"{out_path}: the output would overwrite the input")


def _check_leads(model: Any, leads: DataFrame, id_col: str, in_path: str) -> None:
    """Refuse a lead table without the id column or with columns Spark cannot read as the
    model's training export was read."""
    if id_col not in leads.columns:
        cols = ", ".join(repr(c) for c in leads.columns)
        raise ValueError(f"{in_path}: no id column {id_col!r}; the columns are: {cols}")
    unread = crm_columns_spark_cannot_read(
        getattr(model, "metadata", None),
        {f.name: f.dataType.simpleString() for f in leads.schema.fields},
    )
    if unread:
        raise ValueError(
            f"{in_path}: the model reads these columns as it read its training export, "
            f"which the Spark engine does not do: {', '.join(unread)}; score the file "
            "with the local engine (leadready score --engine local, which reads CSV, "
            "Excel, Parquet and JSON Lines the way train does), or write them typed "
            "(numbers as numbers, dates as days since 1970) into the Parquet input"
        )


def _featurized_leads(
    spark: SparkSession,
    leads: DataFrame,
    model: Any,
    events_path: str | Path | None,
    *,
    id_col: str,
    as_of: object,
    buckets: int | None,
) -> tuple[DataFrame, datetime]:
    """The leads with the model's features built on Spark (input columns kept), and the
    reference time the features were built at."""
    events = spark.read.parquet(str(events_path)) if events_path is not None else None
    if events is not None:
        _check_events(events)
    as_of_ns = _as_of_ns(as_of, events)
    reference = pd.Timestamp(as_of_ns, unit="ns", tz="UTC").to_pydatetime()
    featurized = _featurize(
        leads,
        events,
        as_of_ns=as_of_ns,
        config=model.feature_config,
        id_col=id_col,
        exclude=(),
        buckets=buckets,
        keep_input=True,
    )
    return featurized, reference


def score_spark(
    spark: SparkSession,
    in_path: str | Path,
    out_path: str | Path,
    *,
    model_uri: str = DEFAULT_MODEL_URI,
    events_path: str | Path | None = None,
    id_col: str = "lead_id",
    reasons: bool = False,
    as_of: object = None,
    features_ready: bool = False,
    buckets: int | None = None,
) -> SparkScoreSummary:
    """Score a Parquet lead table on Spark with the registered model and write Parquet: check,
    featurize, predict with MLflow's Spark UDF, write (each step a helper or one call)."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    from model.registry import load_model, resolve_uri

    start = time.perf_counter()
    in_path, out_path = str(in_path), str(out_path)
    _check_paths(in_path, out_path, events_path)

    pinned, version = resolve_uri(model_uri)
    model, _ = load_model(pinned)
    prediction_columns = model.output_columns(reasons=reasons)

    leads = spark.read.parquet(in_path)
    _check_leads(model, leads, id_col, in_path)
    if features_ready or model.feature_config is None:
        scored_input, reference = leads, None
    else:
        scored_input, reference = _featurized_leads(
            spark, leads, model, events_path, id_col=id_col, as_of=as_of, buckets=buckets
        )

    present = set(scored_input.columns)
    inputs = [c for c in model.input_columns if c in present]
    missing = [c for c in model.input_columns if c not in present]
    if not inputs:
        raise ValueError(
            f"{in_path}: none of the model's {len(model.input_columns)} input columns is "
            "present" + ("" if events_path else " (pass the events if it was trained on them)")
        )
    predict = mlflow.pyfunc.spark_udf(
        spark,
        pinned,
        result_type=_result_type(prediction_columns),
        env_manager="local",
        params={"reasons": reasons},
    )
    prediction = predict(F.struct(*[F.col(_quoted(c)) for c in inputs]))

    renamed = {c: f"{c}_input" for c in leads.columns if c in prediction_columns}
    out = scored_input.withColumn(_PREDICTION, prediction).select(
        *[F.col(_quoted(c)).alias(renamed.get(c, c)) for c in leads.columns],
        *[F.col(_PREDICTION)[c].alias(c) for c in prediction_columns],
    )
    routes = _write(spark, out, out_path)
    return SparkScoreSummary(
        rows=sum(routes.values()),
        out_path=out_path,
        model_uri=pinned,
        version=version,
        as_of=reference,
        seconds=time.perf_counter() - start,
        renamed_columns=renamed,
        missing_columns=missing,
        routes=routes,
    )


#: Timestamps as Parquet INT64 microseconds marked UTC (Spark's default is the legacy
#: INT96, which pandas and pyarrow read as naive times).
_TIMESTAMP_CONF = ("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")


def _write(spark: SparkSession, frame: DataFrame, out_path: str) -> dict[str, int]:
    """Write ``frame`` as Parquet (a local folder atomically) and count its routes."""
    key, value = _TIMESTAMP_CONF
    previous = spark.conf.get(key)
    spark.conf.set(key, value)
    try:
        return _write_parquet(spark, frame, out_path)
    finally:
        spark.conf.set(key, previous)


def _write_parquet(spark: SparkSession, frame: DataFrame, out_path: str) -> dict[str, int]:
    if not _is_local(out_path):
        frame.write.mode("overwrite").parquet(out_path)
        return _routes(spark, out_path)
    target = _local_path(out_path).resolve()
    if not target.parent.is_dir():
        raise ValueError(f"no such folder for the output: {target.parent}")
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target}: exists and is not a folder (Spark writes a Parquet folder)")
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        frame.write.parquet(str(tmp))
        routes = _routes(spark, str(tmp))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return routes


def _routes(spark: SparkSession, path: str) -> dict[str, int]:
    rows = spark.read.parquet(path).groupBy("route").count().collect()
    return {
        ("" if r["route"] is None else str(r["route"])): int(r["count"])
        for r in sorted(rows, key=lambda r: (r["route"] is None, str(r["route"])))
    }
