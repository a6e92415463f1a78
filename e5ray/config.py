"""The job's configuration: one frozen, validated tree, and the single home of every default.

    JobConfig
      input:   InputConfig    where the corpus is and which columns to read
      output:  OutputConfig   where shards and manifest go, and in which format (sink)
      model:   ModelConfig    which model, and how it embeds (the embedding space's settings)
      compute: ComputeConfig  where and how wide the embedding runs (executor, device, pool)
      rows:    RowsConfig     row rules: duplicate ids across shards, invalid Unicode, id type
      run:     RunConfig      the run's deadline and its lease on the output
      storage: StoragePolicy  object-store timeouts and retries (e5ray.store.timeouts)
      s3_endpoint, full       storage access and the run's one flag

Each node checks its own fields in `__post_init__` and raises `ConfigError` naming the
field (and its command-line flag) and the valid values, so a bad value fails before any
work starts, wherever the config was built (CLI, job entrypoint, library call). The
command line reads its defaults from these classes: each default is written once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from e5ray.corpus.rows import ID_TYPES, ON_INVALID_UTF8
from e5ray.corpus.sources import FORMATS
from e5ray.corpus.units import DEFAULT_UNIT_ROWS, DEFAULT_UNIT_TOKENS, UnitTarget
from e5ray.errors import ConfigError
from e5ray.model.catalog import DEFAULT_MODEL
from e5ray.model.options import DEVICES, PRECISIONS
from e5ray.model.pooling import E5_POOLING, POOLINGS
from e5ray.model.space import PREFIXES, Prefix
from e5ray.model.windows import LONG_TEXT_MODES, WINDOW_COLUMNS
from e5ray.output.dupes import POLICIES
from e5ray.output.sinks.base import SINKS
from e5ray.refresh.prepare import REUSE_MODES
from e5ray.store.filesystem import s3_options
from e5ray.store.lease import DEFAULT_LEASE_INTERVAL_S, DEFAULT_LEASE_TIMEOUT_S
from e5ray.store.timeouts import StoragePolicy

# The executors by name; e5ray.executors.base maps each to the module that runs it (a test
# keeps the two equal). Named here so that the configuration does not import the executors.
EXECUTORS = ("ray", "local")
# What --executor accepts: an executor, or "auto", which picks one per run from the plan's size
# (e5ray.executors.base.choose_executor).
EXECUTOR_CHOICES = ("auto", *EXECUTORS)
# auto: a run that plans fewer tokens (text bytes / 4) than this embeds in this process. Measured
# on this 2-CPU machine with an e5-small shape (BENCHMARKS.md, "Small work takes the short path"):
# Ray costs ~10.8 s more than the in-process executor before the first vector (11.97 s against
# 1.19 s), and the in-process embedder runs ~4,300 tokens/s, so below ~46,000 tokens no pool, even
# an unbounded one, can make up for Ray's start. Overridable: --small-run-tokens (0: always Ray).
DEFAULT_SMALL_RUN_TOKENS = 50_000

# GPU defaults, measured on an H200 with e5-large fp16 (BENCHMARKS.md, "GPU: e5-large
# export-shaped"): 16,384-row chunks sort lengths well enough that batches pad 10% (2,048-row
# chunks: 38%), and actors sharing a GPU fill each other's gaps while they tokenise and copy
# (`python -m e5ray.bench gpu-actors`: one actor 360,461 tokens/s, two 465,719, three 516,080).
# On the CPU a chunk of 2,048 rows already pads 2%.
DEFAULT_CHUNK_ROWS = {"cpu": 2048, "gpu": 16384}
DEFAULT_GPUS_PER_ACTOR = 1 / 3  # three actors per GPU


def _choice(name: str, value: Any, valid: tuple[str, ...] | list[str], optional: bool = False) -> None:
    if (value is None and optional) or value in valid:
        return
    raise ConfigError(f"{name}: {value!r} is not valid; valid: {', '.join(valid)}")


def _at_least(name: str, value: float | None, low: float, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value!r}")


@dataclass(frozen=True)
class InputConfig:
    uri: str
    format: str | None = None  # None: from each file's extension
    id_column: str = "id"
    text_column: str = "text"
    keep_columns: tuple[str, ...] = ()  # input columns copied beside the vectors

    def __post_init__(self) -> None:
        if not self.uri:
            raise ConfigError("input.uri (--input) is empty")
        _choice("input.format (--format)", self.format, FORMATS, optional=True)
        object.__setattr__(self, "keep_columns", tuple(self.keep_columns))  # a list from a config file
        # window columns: long-text chunk mode; content_hash: row-level refresh (e5ray.output.content_hash)
        taken = {"id", "embedding", self.id_column, "content_hash", *WINDOW_COLUMNS}
        clash = [c for c in self.keep_columns if c in taken]
        if clash:
            raise ConfigError(
                f"input.keep_columns (--keep-columns) {clash}: the output already has id (from "
                f"{self.id_column!r}), embedding, content_hash and, with --long-text chunk, "
                f"{', '.join(WINDOW_COLUMNS)}; "
                "keep other columns"
            )
        if len(set(self.keep_columns)) != len(self.keep_columns):
            raise ConfigError(f"input.keep_columns (--keep-columns) names a column twice: {list(self.keep_columns)}")


@dataclass(frozen=True)
class OutputConfig:
    uri: str
    format: str = "parquet"  # the sink, recorded in the manifest as output.format

    def __post_init__(self) -> None:
        if not self.uri:
            raise ConfigError("output.uri (--output) is empty")
        _choice("output.format (--output-format)", self.format, list(SINKS))


@dataclass(frozen=True)
class ModelConfig:
    name: str = DEFAULT_MODEL
    path: str | None = None  # local or s3:// model directory; None: the catalogue download
    prefix: Prefix = "passage"
    max_length: int = 512
    precision: str | None = None  # None: fp32 on CPU, fp16 on GPU
    int8_min_cosine: float = 0.99
    token_budget: int | None = None  # None: the embedder's per-device default
    cache_dir: str | None = None
    # Space parameters beyond the model (e5ray.model.pooling, e5ray.model.windows).
    pooling: str = E5_POOLING
    long_text: str = "truncate"
    stride: int | None = None  # tokens of overlap between windows; None: max_length // 8

    def __post_init__(self) -> None:
        _choice("model.prefix (--prefix)", self.prefix, list(PREFIXES))
        _choice("model.pooling (--pooling)", self.pooling, list(POOLINGS))
        _choice("model.long_text (--long-text)", self.long_text, LONG_TEXT_MODES)
        _at_least("model.stride (--stride)", self.stride, 0, optional=True)
        _choice("model.precision (--precision)", self.precision, PRECISIONS, optional=True)
        _at_least("model.max_length (--max-length)", self.max_length, 2)
        _at_least("model.token_budget (--token-budget)", self.token_budget, 1, optional=True)
        if not -1.0 <= self.int8_min_cosine <= 1.0:
            raise ConfigError(
                f"model.int8_min_cosine (--int8-min-cosine) must be in [-1, 1], got {self.int8_min_cosine}"
            )


@dataclass(frozen=True)
class ComputeConfig:
    device: str = "cpu"
    executor: str = "auto"  # or a name in EXECUTORS: "auto" picks one per run (EXECUTOR_CHOICES)
    small_run_tokens: int = DEFAULT_SMALL_RUN_TOKENS  # auto: fewer planned tokens run in process
    threads_per_actor: int | None = None  # None: a whole small node, at most 8
    min_actors: int = 1
    max_actors: int | None = None  # None: as many as the cluster fits
    gpus_per_actor: float | None = None  # None: DEFAULT_GPUS_PER_ACTOR (GPU runs only)
    chunk_rows: int | None = None  # None: DEFAULT_CHUNK_ROWS of the device
    unit_rows: int = DEFAULT_UNIT_ROWS  # a work unit closes at this many rows ...
    unit_tokens: int = DEFAULT_UNIT_TOKENS  # ... or about this many tokens (bytes / 4)
    retries: int = 3  # times a unit that failed for a transient reason (a lost node) is run again

    def __post_init__(self) -> None:
        _choice("compute.device (--device)", self.device, DEVICES)
        _choice("compute.executor (--executor)", self.executor, EXECUTOR_CHOICES)
        _at_least("compute.small_run_tokens (--small-run-tokens)", self.small_run_tokens, 0)
        _at_least("compute.threads_per_actor (--threads-per-actor)", self.threads_per_actor, 1, optional=True)
        _at_least("compute.min_actors (--min-actors)", self.min_actors, 1)
        _at_least("compute.max_actors (--max-actors)", self.max_actors, 1, optional=True)
        if self.gpus_per_actor is not None and self.gpus_per_actor <= 0:
            raise ConfigError(f"compute.gpus_per_actor (--gpus-per-actor) must be > 0, got {self.gpus_per_actor}")
        _at_least("compute.chunk_rows (--chunk-rows)", self.chunk_rows, 1, optional=True)
        _at_least("compute.unit_rows (--unit-rows)", self.unit_rows, 1)
        _at_least("compute.unit_tokens (--unit-tokens)", self.unit_tokens, 1)
        _at_least("compute.retries (--retries)", self.retries, 0)

    @property
    def rows_per_chunk(self) -> int:
        """Rows read and embedded per step: the given `chunk_rows`, else the device's default."""
        return self.chunk_rows or DEFAULT_CHUNK_ROWS[self.device]

    @property
    def actor_gpus(self) -> float:
        """GPUs one GPU actor reserves: the given `gpus_per_actor`, else three actors per GPU."""
        return self.gpus_per_actor or DEFAULT_GPUS_PER_ACTOR

    @property
    def unit_target(self) -> UnitTarget:
        return UnitTarget(self.unit_rows, self.unit_tokens)


@dataclass(frozen=True)
class RowsConfig:
    duplicate_ids: str = "reject"  # e5ray.output.dupes
    on_invalid_utf8: str = "reject"  # e5ray.corpus.rows
    id_type: str = "auto"  # e5ray.corpus.rows

    def __post_init__(self) -> None:
        _choice("rows.duplicate_ids (--duplicate-ids)", self.duplicate_ids, POLICIES)
        _choice("rows.on_invalid_utf8 (--on-invalid-utf8)", self.on_invalid_utf8, ON_INVALID_UTF8)
        _choice("rows.id_type (--id-type)", self.id_type, ID_TYPES)


@dataclass(frozen=True)
class RunConfig:
    deadline: float | None = None  # seconds for the whole run; None: no limit
    lease_interval: float = DEFAULT_LEASE_INTERVAL_S  # e5ray.store.lease
    lease_timeout: float = DEFAULT_LEASE_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.deadline is not None and self.deadline <= 0:
            raise ConfigError(f"run.deadline (--deadline) must be > 0 seconds, got {self.deadline}")
        if self.lease_interval <= 0 or self.lease_timeout <= self.lease_interval:
            raise ConfigError(
                f"run.lease_interval (--lease-interval) must be > 0 and below run.lease_timeout (--lease-timeout), "
                f"got {self.lease_interval} and {self.lease_timeout}"
            )


@dataclass(frozen=True)
class JobConfig:
    input: InputConfig
    output: OutputConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    rows: RowsConfig = field(default_factory=RowsConfig)
    run: RunConfig = field(default_factory=RunConfig)
    storage: StoragePolicy = field(default_factory=StoragePolicy)
    s3_endpoint: str | None = None  # None: $AWS_ENDPOINT_URL; credentials come from the AWS chain
    full: bool = False  # re-embed every shard (allowed across embedding spaces)
    reuse: str = "rows"  # none | shard | rows: what a refresh reuses (e5ray.refresh.prepare)

    def __post_init__(self) -> None:
        _choice("reuse (--reuse)", self.reuse, REUSE_MODES)
        if self.precision == "fp16" and self.compute.device != "gpu":
            raise ConfigError("model.precision (--precision) 'fp16' needs compute.device (--device) 'gpu'")

    @property
    def precision(self) -> str:
        """The precision the run uses: the model's, else the device's default."""
        return self.model.precision or ("fp16" if self.compute.device == "gpu" else "fp32")

    def storage_options(self) -> dict[str, Any] | None:
        return s3_options(self.s3_endpoint, self.storage) or None

    @classmethod
    def from_options(cls, **options: Any) -> JobConfig:
        """Build the tree from flat options named as the command-line flags are
        (`input`, `output`, `model`, `model_path`, `max_length`, `device`, ...);
        omitted options keep their defaults. Unknown names are an error."""
        unknown = set(options) - set(_OPTION_FIELDS)
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)}; valid: {', '.join(_OPTION_FIELDS)}")
        sections: dict[str, dict[str, Any]] = {
            "input": {},
            "output": {},
            "model": {},
            "compute": {},
            "rows": {},
            "run": {},
            "storage": {},
            "": {},
        }
        for name, value in options.items():
            section, attr = _OPTION_FIELDS[name]
            sections[section][attr] = value
        return cls(
            input=InputConfig(**sections["input"]),
            output=OutputConfig(**sections["output"]),
            model=ModelConfig(**sections["model"]),
            compute=ComputeConfig(**sections["compute"]),
            rows=RowsConfig(**sections["rows"]),
            run=RunConfig(**sections["run"]),
            storage=StoragePolicy(**sections["storage"]),
            **sections[""],
        )


# Flat option name (the CLI flag without dashes) -> (section, field) in the tree.
_OPTION_FIELDS: dict[str, tuple[str, str]] = {
    "input": ("input", "uri"),
    "format": ("input", "format"),
    "id_column": ("input", "id_column"),
    "text_column": ("input", "text_column"),
    "keep_columns": ("input", "keep_columns"),
    "output": ("output", "uri"),
    "output_format": ("output", "format"),
    "model": ("model", "name"),
    "model_path": ("model", "path"),
    **{f.name: ("model", f.name) for f in dataclasses.fields(ModelConfig) if f.name not in ("name", "path")},
    **{f.name: ("compute", f.name) for f in dataclasses.fields(ComputeConfig)},
    **{f.name: ("rows", f.name) for f in dataclasses.fields(RowsConfig)},
    **{f.name: ("run", f.name) for f in dataclasses.fields(RunConfig)},
    **{f"s3_{f.name}": ("storage", f.name) for f in dataclasses.fields(StoragePolicy)},
    "s3_endpoint": ("", "s3_endpoint"),
    "full": ("", "full"),
    "reuse": ("", "reuse"),
}
OPTIONS = tuple(_OPTION_FIELDS)
