"""The change-feed benchmark: what recording row changes costs a refresh, and what it saves downstream.

Day 1 and day 2 are the refresh benchmark's (`e5ray.bench.refresh`): a full embed of `docs`
documents, then every file rewritten and reshuffled, 5% of the texts edited, 2% added, 1%
deleted, and a refresh. Measured side by side in one run, one after the other on one machine:
1. the change file of day 2's version: its bytes and the seconds it took to build (from the
   manifest's `row_changes`), per million rows of the version. A reshuffled export is the worst
   case: no file is shared, so every id and hash of both versions is read;
2. a LanceDB table of day 1 brought to day 2 by `export --incremental` against a full export
   (`mode="overwrite"`) of day 2: bytes written (the growth of the table's directory: Lance
   writes new files, and keeps the old version's until a cleanup) and seconds, the median of
   `repeats` alternating pairs, each from a fresh copy of day 1's table;
Both exports run in one warm process (imports done, as in a service that syncs every night).
`dim`: a one-layer model of that width (`e5ray.bench.model.shallow_shape`) instead of `shape`:
vectors as wide as e5-small's (384) for a fraction of its embedding time; what the exports cost
depends on the width, not on the depth.
3. the peak RSS of `e5ray changes --since 1 --out FILE` in its own process, beside the peak of
   the same process reading a feed with nothing in it (imports and the manifest only).
`words`: texts of that many random words instead of the corpus's lognormal lengths, so that a
1M-row output builds in minutes with the tiny model (`--docs 1000000 --words 6`).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from e5ray.bench.config import BenchConfig
from e5ray.bench.corpus import make_corpus
from e5ray.bench.model import prepare_model, prepare_shallow_model
from e5ray.bench.monitor import machine_info
from e5ray.bench.refresh import RefreshBenchConfig, _job, next_day, write_export
from e5ray.job.run import run_job
from e5ray.output.export_lance import export_lance
from e5ray.testing.words import sample_words


@dataclass
class ChangesBenchConfig:
    shape: str = "tiny"
    dim: int | None = None  # a one-layer model of this width instead of `shape` (see shallow_shape)
    docs: int = 20_000
    shards: int = 8
    edit: float = 0.05
    add: float = 0.02
    delete: float = 0.01
    seed: int = 0
    workdir: str | None = None
    repeats: int = 5  # incremental/full export pairs, alternating, each from a fresh copy of day 1's table
    words: int | None = None  # texts of this many random words instead of the corpus's lengths (cheap at 1M rows)


def short_texts(n: int, words: int, seed: int) -> list[str]:
    """`n` texts of `words` words drawn from `sample_words()`: a 1M-row output built in minutes
    (what `changes` and the exports cost depends on rows and ids, not on the texts' lengths)."""
    rng = random.Random(seed)
    vocabulary = sample_words()
    return [" ".join(rng.choices(vocabulary, k=words)) for _ in range(n)]


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed_export(out: Path, db: Path, incremental: bool) -> dict[str, Any]:
    before = tree_bytes(db) if db.exists() else 0
    t0 = time.perf_counter()
    done = export_lance(str(out), str(db), "docs", incremental=incremental)
    seconds = time.perf_counter() - t0
    return {**done, "seconds": round(seconds, 3), "bytes_written": tree_bytes(db) - before}


def export_pairs(out: Path, workdir: Path, repeats: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """`repeats` alternating pairs (incremental sync, full export), each on a fresh copy of day 1's
    table: the last pair's reports with `seconds` the median and every sample beside it. On a
    shared machine one sample of a 0.1-0.5 s operation is mostly the neighbours' noise."""
    samples: dict[str, list[dict[str, Any]]] = {"incremental": [], "full": []}
    for _ in range(max(1, repeats)):
        for kind in samples:
            db = workdir / f"{'synced' if kind == 'incremental' else 'full'}.lancedb"
            shutil.rmtree(db, ignore_errors=True)
            shutil.copytree(workdir / "day1.lancedb", db)  # a full export overwrites day 1's table, as in place
            samples[kind].append(timed_export(out, db, incremental=kind == "incremental"))

    def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
        seconds = sorted(run["seconds"] for run in runs)
        return {**runs[-1], "seconds": seconds[len(seconds) // 2], "seconds_samples": [r["seconds"] for r in runs]}

    return summary(samples["incremental"]), summary(samples["full"])


PEAK_RSS_KIB = (
    # The process's own high-water mark. Linux keeps ru_maxrss across exec, so a child of the
    # benchmark (which holds Ray and a model: ~0.5-0.7 GiB) would report its parent's peak;
    # VmHWM belongs to the exec'd image. ru_maxrss where there is no /proc (KiB on Linux, bytes on macOS).
    "def peak():\n"
    "    try:\n"
    "        return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
    "    except OSError:\n"
    "        import resource\n"
    "        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "        return r // 1024 if sys.platform == 'darwin' else r\n"
)


def changes_peak_rss(out: Path, since: int, target: Path | None) -> dict[str, Any]:
    """`e5ray changes` in a process of its own: its peak RSS (MiB) and wall seconds."""
    argv = ["changes", str(out), "--since", str(since), *(["--out", str(target)] if target else [])]
    code = (
        "import sys, time; import pyarrow as pa; from e5ray.cli.app import main\n"
        + PEAK_RSS_KIB
        + "t0 = time.perf_counter(); before = peak()\n"
        f"rc = main({argv!r}); print(time.perf_counter() - t0); print(pa.default_memory_pool().max_memory())\n"
        "print(before); print(peak()); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    return {
        "peak_rss_mib": round(int(lines[-1]) / 1024, 1),
        "rss_after_imports_mib": round(int(lines[-2]) / 1024, 1),
        "arrow_peak_mib": round(int(lines[-3]) / 2**20, 1),
        "seconds": round(float(lines[-4]), 3),
        "said": lines[0],
    }


def run_changes_benchmark(cfg: ChangesBenchConfig) -> dict[str, Any]:
    workdir = Path(cfg.workdir or tempfile.mkdtemp(prefix="e5ray-changes-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    refresh_cfg = RefreshBenchConfig(
        shape=cfg.shape,
        docs=cfg.docs,
        shards=cfg.shards,
        edit=cfg.edit,
        add=cfg.add,
        delete=cfg.delete,
        seed=cfg.seed,
        workdir=str(workdir),
    )
    if cfg.dim:
        bench_model = prepare_shallow_model(cfg.dim, cfg.seed, workdir)
    else:
        bench_model = prepare_model(BenchConfig(shape=cfg.shape, seed=cfg.seed), workdir)
    extra = int(cfg.docs * cfg.edit) + int(cfg.docs * cfg.add)
    if cfg.words:
        texts = short_texts(cfg.docs + extra, cfg.words, cfg.seed)
    else:
        texts = make_corpus(cfg.docs + extra, bench_model.tokenizer_path, seed=cfg.seed)
    day1 = dict(enumerate(texts[: cfg.docs]))
    day2, counts = next_day(day1, texts[cfg.docs :], refresh_cfg)
    inp, out = workdir / "corpus", workdir / "output"
    for stale in (out, workdir / "day1.lancedb", workdir / "synced.lancedb", workdir / "full.lancedb"):
        shutil.rmtree(stale, ignore_errors=True)
    write_export(inp, list(day1.items()), cfg.shards, cfg.seed)
    run_job(_job(inp, out, bench_model.directory, refresh_cfg))
    day1_export = timed_export(out, workdir / "day1.lancedb", incremental=True)  # the first: a full write

    write_export(inp, list(day2.items()), cfg.shards, cfg.seed + 2)
    t0 = time.perf_counter()
    v2 = run_job(_job(inp, out, bench_model.directory, refresh_cfg)).to_dict()
    refresh_seconds = time.perf_counter() - t0
    # Both exports timed in a warm process: the incremental one opens the table's Lance dataset to record
    # the version (pylance, imported once per process: ~0.17 s on the 2-CPU machine, not counted).
    import lance  # noqa: F401

    incremental, full = export_pairs(out, workdir, cfg.repeats)
    ref, rows = v2["row_changes"], v2["totals"]["embedded"]
    per_million = 1e6 / max(1, rows)
    result = {
        "config": asdict(cfg),
        "model": bench_model.info,
        "machine": machine_info(),
        "day2": {"docs": len(day2), **counts, "row_changes": ref["counts"]},
        "refresh_seconds": round(refresh_seconds, 2),
        "change_file": {
            "bytes": ref["bytes"],
            "seconds": ref["seconds"],
            "rows_listed": ref["rows"],
            "bytes_per_million_rows": round(ref["bytes"] * per_million),
            "seconds_per_million_rows": round(ref["seconds"] * per_million, 3),
            "share_of_refresh": round(ref["seconds"] / refresh_seconds, 4),
            "version_bytes": v2["totals"]["bytes"],
        },
        "lance": {
            "day1_full": day1_export,
            "incremental": incremental,
            "full": full,
            "bytes_ratio": round(incremental["bytes_written"] / max(1, full["bytes_written"]), 4),
            "seconds_ratio": round(incremental["seconds"] / max(1e-9, full["seconds"]), 4),
        },
        "changes_stream": changes_peak_rss(out, 1, workdir / "changes.parquet"),
        "changes_baseline": changes_peak_rss(out, 2, None),
    }
    (workdir / "changes-bench.json").write_text(json.dumps(result, indent=1))
    return result


def format_changes_report(r: dict[str, Any]) -> str:
    c, lance = r["change_file"], r["lance"]
    inc, full = lance["incremental"], lance["full"]
    stream, base = r["changes_stream"], r["changes_baseline"]
    return "\n".join(
        [
            f"model: {r['model']['shape']} shape, {r['machine'].get('cpus', '?')} CPUs; day 2: {r['day2']['docs']:,} "
            f"docs, row changes {r['day2']['row_changes']}",
            f"change file: {c['bytes']:,} bytes, {c['seconds']:.3f} s to build ({c['rows_listed']:,} rows listed); "
            f"per million rows: {c['bytes_per_million_rows'] / 1e6:.2f} MB, {c['seconds_per_million_rows']:.2f} s; "
            f"{c['share_of_refresh']:.1%} of the refresh ({r['refresh_seconds']:.2f} s)",
            f"lance --incremental: {inc['bytes_written'] / 1e6:.2f} MB written in {inc['seconds']:.3f} s (median) "
            f"({inc['upserts']:,} upserts, {inc['deletes']:,} deletes)",
            f"lance full export:   {full['bytes_written'] / 1e6:.2f} MB written in {full['seconds']:.3f} s (median; "
            f"samples {full['seconds_samples']} against {inc['seconds_samples']})",
            f"incremental / full: bytes {lance['bytes_ratio']:.3f} (goal <= 0.15), seconds {lance['seconds_ratio']:.3f} "
            f"(goal <= 0.25)",
            f"e5ray changes --since 1 --out: peak RSS {stream['peak_rss_mib']} MiB ({stream['rss_after_imports_mib']} "
            f"after imports; Arrow's peak allocation {stream['arrow_peak_mib']} MiB) in {stream['seconds']:.2f} s; "
            f"an empty feed: {base['peak_rss_mib']} MiB",
        ]
    )
