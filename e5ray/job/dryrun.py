"""`e5ray embed --dry-run`: the plan of a run, printed, with nothing written and no model loaded.

It goes through the same planning as a run (discover, preflight, the previous manifest,
the space check, carry/reuse decisions) and then estimates the work:
- tokens: a sample of rows from up to `SAMPLE_SHARDS` shards to embed is tokenized with
  the model's own tokenizer (tokenizer.json only; the ONNX model is hashed to know the
  embedding space but never loaded), scaled by each shard's row count (Parquet metadata)
  or by its size (JSONL: rows per byte of the sample);
- time: those tokens at the tokens/s the output's previous run measured, if there was one.
Both are estimates and printed as such.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from e5ray.config import JobConfig
from e5ray.corpus.sources import SourceShard
from e5ray.job.plan import plan_run
from e5ray.model.resolve import resolve_model
from e5ray.model.space import prefix_text
from e5ray.store.filesystem import OutputDir, filesystem_for

SAMPLE_SHARDS = 3
SAMPLE_ROWS = 256


@dataclass
class Preview:
    input: str
    output: str
    shards: int
    source_bytes: int
    space: dict[str, Any]
    previous_version: int | None
    to_embed: list[SourceShard] = field(default_factory=list)
    carried: int = 0
    reused: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    sampled_rows: int = 0
    est_tokens: int | None = None
    est_rows: int | None = None
    rate: float | None = None  # tokens/s measured by the previous run

    @property
    def est_seconds(self) -> float | None:
        if self.est_tokens is None or not self.rate:
            return None
        return self.est_tokens / self.rate


class _Counting:
    """A file wrapper counting the bytes read through it (compressed bytes under gzip)."""

    def __init__(self, fh: Any) -> None:
        self.fh, self.count = fh, 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.fh.read(n)
        self.count += len(data)
        return data


def _sample_texts(source: SourceShard, text_column: str, options: dict[str, Any] | None) -> tuple[list[str], float]:
    """Up to SAMPLE_ROWS texts of a shard, and the shard's estimated row count."""
    fs, path = filesystem_for(source.uri, options)
    if source.format == "parquet":
        with fs.open(path, "rb") as fh:
            parquet = pq.ParquetFile(fh)
            total = parquet.metadata.num_rows
            batch = next(parquet.iter_batches(batch_size=SAMPLE_ROWS, columns=[text_column]), None)
            values = batch.column(0).to_pylist() if batch is not None else []
        return [t for t in values if isinstance(t, str)], float(total)
    texts: list[str] = []
    lines = 0
    with fs.open(path, "rb") as raw:
        counted = _Counting(raw)
        stream: Any = gzip.GzipFile(fileobj=counted) if source.uri.endswith(".gz") else counted  # type: ignore[call-overload]
        buffer = b""
        at_end = False
        while lines < SAMPLE_ROWS:
            block = stream.read(1 << 16)
            if not block:
                at_end = True
                break
            buffer += block
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                if line.strip() and lines < SAMPLE_ROWS:
                    lines += 1
                    try:
                        text = json.loads(line).get(text_column)
                    except (ValueError, AttributeError):
                        continue
                    if isinstance(text, str):
                        texts.append(text)
        if at_end and buffer.strip():
            lines += 1
    total = lines if at_end or counted.count == 0 else lines * source.size / counted.count
    return texts, float(total)


def preview_run(config: JobConfig) -> Preview:
    """The plan of `config`'s run, with token and time estimates; writes nothing."""
    options = config.storage_options()
    planned = plan_run(config, OutputDir(config.output.uri, options), create_output=False)
    previous = planned.previous
    preview = Preview(
        input=config.input.uri,
        output=config.output.uri,
        shards=len(planned.sources),
        source_bytes=sum(s.size for s in planned.sources),
        space=planned.space.to_dict(),
        previous_version=previous.version if previous else None,
        # A source split into units is one source to sample and estimate, once.
        to_embed=list({t.source.uri: t.source for t in planned.todo}.values()),
        carried=len(planned.plan.carried),
        reused=len(planned.reused),
        changes=planned.plan.changes()["counts"],
    )
    if previous and previous.run.tokens_per_s:
        preview.rate = float(previous.run.tokens_per_s)
    _estimate_tokens(preview, config, options)
    return preview


def _estimate_tokens(preview: Preview, config: JobConfig, options: dict[str, Any] | None) -> None:
    if not preview.to_embed:
        preview.est_tokens = preview.est_rows = 0
        return
    from tokenizers import Tokenizer

    model = config.model
    files = resolve_model(model.name, model.path, model.cache_dir, options)
    tokenizer = Tokenizer.from_file(str(files.tokenizer_path))
    max_length = int(preview.space["max_length"])
    prefix = prefix_text(model.prefix)
    sampled_tokens = sampled_bytes = sampled_rows = 0
    est_rows = 0.0
    tokens_per_row: list[float] = []
    for source in sorted(preview.to_embed, key=lambda s: -s.size)[:SAMPLE_SHARDS]:
        try:
            texts, rows = _sample_texts(source, config.input.text_column, options)
        except Exception:  # an unreadable shard: the run itself will report it
            continue
        if not texts:
            continue
        counts = [min(len(e.ids), max_length) for e in tokenizer.encode_batch([prefix + t for t in texts])]
        tokens_per_row.append(sum(counts) / len(counts))
        sampled_tokens += int(sum(counts) / len(counts) * rows)
        sampled_bytes += source.size
        sampled_rows += len(texts)
        est_rows += rows
    preview.sampled_rows = sampled_rows
    if not sampled_bytes:
        return
    # Shards not sampled: the sampled shards' tokens (and rows) per source byte.
    total_bytes = sum(s.size for s in preview.to_embed)
    preview.est_tokens = int(sampled_tokens * total_bytes / sampled_bytes)
    preview.est_rows = int(est_rows * total_bytes / sampled_bytes)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_preview(p: Preview, limit: int = 10) -> str:
    space = p.space
    nxt = (p.previous_version or 0) + 1
    todo_bytes = sum(s.size for s in p.to_embed)
    c = p.changes
    lines = [
        "e5ray: dry run (nothing is written, no model is loaded)",
        f"  input      {p.input}: {p.shards} shards, {_size(p.source_bytes)}",
        f"  output     {p.output}: "
        + (f"version {p.previous_version} -> {nxt}" if p.previous_version else f"new output, version {nxt}"),
        f"  space      {space['model']} dim {space['dim']}, prefix {space['prefix']}, max length "
        f"{space['max_length']}, {space['precision']} (sha256 {space['model_sha256'][:12]})",
        f"  plan       {len(p.to_embed)} shards to embed ({_size(todo_bytes)}), {p.carried} carried unchanged, "
        f"{p.reused} reused from an interrupted run; {c.get('added', 0)} added, {c.get('changed', 0)} changed, "
        f"{c.get('removed', 0)} removed",
    ]
    if not p.to_embed:
        lines.append("  estimate   nothing to embed: a run would commit the next version with every shard carried")
    elif p.est_tokens is None:
        lines.append("  estimate   tokens: unknown (no sampled shard could be read)")
    else:
        lines.append(
            f"  estimate   ~{p.est_tokens:,} tokens in ~{p.est_rows:,} rows (tokenizer on {p.sampled_rows} sampled rows)"
        )
        if p.est_seconds is not None:
            lines.append(f"             ~{p.est_seconds:,.0f} s at the {p.rate:,.0f} tokens/s of the previous run")
        elif p.est_tokens:
            lines.append("             time: unknown until a first run of this output measures tokens/s")
    if p.to_embed:
        names = [s.relpath for s in p.to_embed[:limit]]
        more = f" ... and {len(p.to_embed) - limit} more" if len(p.to_embed) > limit else ""
        lines.append(f"  to embed   {', '.join(names)}{more}")
    return "\n".join(lines)
