"""`e5ray eval`: retrieval quality of embedding variants on labelled pairs, A/B with intervals.

Each variant (pooling, prefixes, precision, max length, long-text mode) embeds the queries
(`query: `) and the whole passage pool (`passage: `) with its own E5Embedder, ranks the
pool for each query by cosine, and is scored per query (e5ray.quality.metrics). Variants after
the first get the paired difference of each metric to the first, with a percentile
bootstrap interval over queries; every interval of a report uses the same resampled
queries (one seed), so the report is reproducible and "B beats A" is a measured statement:
the interval of B - A excludes 0.

Memory: a variant holds the vectors of the whole pool (passages x dim x 4 bytes, plus
windows in chunk mode); queries are ranked in blocks of 256, so the score matrix never
holds more than 256 rows. eval is meant for labelled sets, not whole corpora.

int8 variants are measured, not gated: the embedder's int8 quality gate is off here (its
cosine to fp32 is still reported), since measuring int8 is what eval is for.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from e5ray.quality.evaldata import EvalSet
from e5ray.quality.metrics import METRICS, bootstrap_indices, interval, paired_bootstrap, per_query_metrics, top_k

log = logging.getLogger("e5ray")
FORMAT = "e5ray.eval/1"
# Variant keys -> allowed values (None: a positive integer).
VARIANT_KEYS: dict[str, tuple[str, ...] | None] = {
    "pooling": ("mean", "cls"),
    "prefix": ("on", "off"),
    "precision": ("fp32", "int8", "fp16"),
    "max_length": None,
    "long_text": ("truncate", "chunk", "average"),
}
DEPTH = 10  # ranks scored: every metric looks at the top 10 at most


@dataclass(frozen=True)
class Variant:
    """One embedding configuration; `settings` holds only what was given (the rest: defaults)."""

    name: str
    settings: tuple[tuple[str, str | int], ...]

    @property
    def options(self) -> dict[str, str | int]:
        return dict(self.settings)


def parse_variant(text: str) -> Variant:
    """'pooling=cls,prefix=off' -> Variant; an empty string is the defaults."""
    settings: dict[str, str | int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key, value = key.strip().replace("-", "_"), value.strip()
        if not sep or key not in VARIANT_KEYS:
            raise ValueError(f"variant {text!r}: {part!r} is not KEY=VALUE with KEY one of {', '.join(VARIANT_KEYS)}")
        if key in settings:
            raise ValueError(f"variant {text!r} sets {key} twice")
        allowed = VARIANT_KEYS[key]
        if allowed is None:
            if not value.isdigit() or int(value) < 2:
                raise ValueError(f"variant {text!r}: {key} must be an integer >= 2, got {value!r}")
            settings[key] = int(value)
        elif value not in allowed:
            raise ValueError(f"variant {text!r}: {key}={value!r}; valid: {', '.join(allowed)}")
        else:
            settings[key] = value
    return Variant(text.strip() or "default", tuple(settings.items()))


def _embedder_supports(name: str) -> bool:
    from e5ray.model.embedder import E5Embedder

    return name in inspect.signature(E5Embedder.__init__).parameters


def build_embedder(variant: Variant, model_kwargs: dict[str, Any]) -> Any:
    """An E5Embedder for `variant`; options the installed embedder lacks fail with a clear error."""
    from e5ray.model.embedder import E5Embedder

    options = variant.options
    kwargs = dict(model_kwargs, int8_min_cosine=-1.0)
    for key in ("precision", "max_length", "pooling", "long_text"):
        if key not in options:
            continue
        if key in ("pooling", "long_text") and not _embedder_supports(key):
            raise ValueError(f"variant {variant.name!r}: this e5ray's E5Embedder has no {key}= option")
        kwargs[key] = options[key]
    return E5Embedder(**kwargs)


def score_variant(variant: Variant, evalset: EvalSet, model_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Embed queries and pool for `variant`, rank, and return per-query metrics and costs."""
    import time

    embedder = build_embedder(variant, model_kwargs)
    prefixes = ("query", "passage") if variant.options.get("prefix", "on") == "on" else ("none", "none")
    query_kwargs = {"long_text": "truncate"} if _embedder_supports("long_text") else {}
    start = time.perf_counter()
    queries = embedder.embed(evalset.queries, prefixes[0], **query_kwargs).vectors
    pool = embedder.embed(evalset.passages, prefixes[1])
    seconds = time.perf_counter() - start
    windows = getattr(pool, "windows", None)
    doc = None if windows is None or len(pool.vectors) == len(evalset.passages) else np.asarray(windows.doc)
    ranking = rank_pool(queries, pool.vectors, len(evalset.passages), doc)
    return {
        "per_query": per_query_metrics(ranking, evalset.judgments),
        "seconds": seconds,
        "tokens": int(pool.tokens),
        "truncated_passages": int(np.count_nonzero(pool.truncated)) if doc is None else 0,
        "space": embedder.space.to_dict(),
        "int8_cosine": getattr(embedder, "int8_cosine", None),
    }


def rank_pool(
    queries: np.ndarray, rows: np.ndarray, passages: int, doc: np.ndarray | None = None, chunk: int = 256
) -> np.ndarray:
    """Top-DEPTH passage indices per query. `doc` (chunk mode): the passage of each row of
    `rows`, rows of a passage consecutive; a passage scores its best window."""
    out = np.empty((len(queries), min(DEPTH, passages)), dtype=np.int64)
    if doc is not None:
        starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
        if len(starts) != passages or not np.array_equal(doc[starts], np.arange(passages)):
            raise ValueError("chunk mode: windows must come in passage order, each passage's windows together")
    for begin in range(0, len(queries), chunk):
        scores = queries[begin : begin + chunk] @ rows.T
        if doc is not None:
            scores = np.maximum.reduceat(scores, starts, axis=1)
        out[begin : begin + chunk] = top_k(scores, DEPTH)
    return out


def run_eval(
    evalset: EvalSet,
    variants: Sequence[Variant],
    model_kwargs: dict[str, Any],
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The JSON report: data summary, settings, and per variant its metrics with intervals."""
    if not variants:
        raise ValueError("no variants to evaluate")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variants must differ, got {names}")
    indices = bootstrap_indices(len(evalset.queries), resamples, seed)
    results = []
    for variant in variants:
        log.info(
            "eval: embedding %d queries and %d passages for %s",
            len(evalset.queries),
            len(evalset.passages),
            variant.name,
        )
        results.append(score_variant(variant, evalset, model_kwargs))
    base = results[0]["per_query"]
    report_variants: list[dict[str, Any]] = []
    for variant, result in zip(variants, results, strict=True):
        per_query = result["per_query"]
        entry: dict[str, Any] = {
            "name": variant.name,
            "settings": variant.options,
            "metrics": {},
            "seconds": round(result["seconds"], 3),
            "tokens": result["tokens"],
            "truncated_passages": result["truncated_passages"],
            "space": result["space"],
        }
        if result["int8_cosine"] is not None:
            entry["int8_cosine_to_fp32"] = result["int8_cosine"]
        for name in METRICS:
            low, high = interval(per_query[name], indices, confidence)
            entry["metrics"][name] = {"value": float(per_query[name].mean()), "low": low, "high": high}
        if report_variants:
            entry["vs_first"] = {}
            for name in METRICS:
                diff, low, high = paired_bootstrap(base[name], per_query[name], indices, confidence)
                entry["vs_first"][name] = {"diff": diff, "low": low, "high": high}
        report_variants.append(entry)
    return {
        "format": FORMAT,
        "data": evalset.summary(),
        "model": {k: (str(v) if v is not None else None) for k, v in model_kwargs.items()},
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": confidence, "over": "queries"},
        "metrics": list(METRICS),
        "variants": report_variants,
    }


def format_table(report: dict[str, Any]) -> str:
    """Metrics per variant; under each later variant, "vs first": its difference to the first
    variant, then the interval of that difference in brackets."""
    metrics = report["metrics"]
    width = max(len(v["name"]) for v in report["variants"]) + 2
    lines = [f"{'variant':<{width}}" + "".join(f"{m:>25}" for m in metrics)]
    for v in report["variants"]:
        lines.append(f"{v['name']:<{width}}" + "".join(f"{v['metrics'][m]['value']:>25.3f}" for m in metrics))
        if "vs_first" in v:
            cells = [
                f"{d['diff']:+.3f} [{d['low']:+.3f},{d['high']:+.3f}]" for d in (v["vs_first"][m] for m in metrics)
            ]
            lines.append(f"{'  vs first':<{width}}" + "".join(f"{c:>25}" for c in cells))
    boot = report["bootstrap"]
    data = report["data"]
    lines.append(
        f"{data['queries']} queries, {data['passages']} passages ({data['source']}); "
        f"[low,high]: {boot['confidence']:.0%} paired bootstrap interval over queries, "
        f"{boot['resamples']} resamples, seed {boot['seed']}"
    )
    return "\n".join(lines)
