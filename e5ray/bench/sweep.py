"""The sweep stage: E5Embedder tokens/s over token budgets x max rows, and ORT thread spinning on/off."""

from __future__ import annotations

import time
from typing import Any

from e5ray.bench.ceiling import session_options
from e5ray.bench.config import WARMUP_DOCS
from e5ray.bench.contestants import embedder_for, texts_of


def _session_with_spinning(embedder: Any, allow_spinning: bool) -> Any:
    """The embedder's CPU session, rebuilt with `session.intra_op.allow_spinning` set."""
    import onnxruntime as ort

    options = session_options(embedder.threads)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    return ort.InferenceSession(str(embedder.onnx_path), options, providers=["CPUExecutionProvider"])


def stage_sweep(params: dict[str, Any]) -> dict[str, Any]:
    """E5Embedder tokens/s over token budgets x max rows, and ORT thread spinning on/off.

    The grid times `run` on pre-tokenised texts (batching is all it changes); configurations
    are interleaved over `reps` rounds so drift on a noisy machine hits all of them alike.
    """
    from e5ray.worker.embed_unit import _prefetch

    texts = texts_of(params)
    embedder = embedder_for(params)
    default_budget, default_rows = embedder.token_budget, embedder.max_batch_rows
    tokens = embedder.tokenize(texts, "passage")
    embedder.run(embedder.tokenize(texts[:WARMUP_DOCS]))
    grid: dict[tuple[int, int], list[float]] = {}
    info: dict[tuple[int, int], dict[str, Any]] = {}
    for _ in range(params["reps"]):
        for budget in params["budgets"]:
            for rows in params["rows"]:
                embedder.token_budget, embedder.max_batch_rows = budget, rows
                result = embedder.run(tokens)
                grid.setdefault((budget, rows), []).append(result.tokens / result.seconds)
                info[(budget, rows)] = {"padded_tokens": result.padded_tokens, "batches": result.batches}
    cells = []
    for (budget, rows), rates in grid.items():
        padded = info[(budget, rows)]["padded_tokens"]
        cells.append(
            {
                "token_budget": budget,
                "max_rows": rows,
                "tokens_per_s": round(max(rates), 1),
                "tokens_per_s_all": [round(r, 1) for r in rates],
                "batches": info[(budget, rows)]["batches"],
                "padding_share": round(1 - tokens.lengths.sum() / padded, 4),
            }
        )
    best = max(cells, key=lambda c: c["tokens_per_s"])

    embedder.token_budget, embedder.max_batch_rows = default_budget, default_rows
    chunk = 64

    def pipelined() -> float:
        # As embed_shard does: tokenise the next chunk in a thread while ONNX runs this one.
        t0 = time.perf_counter()
        done = 0
        chunks = (texts[i : i + chunk] for i in range(0, len(texts), chunk))
        for tok in _prefetch(embedder.tokenize(c, "passage") for c in chunks):
            done += embedder.run(tok).tokens
        return done / (time.perf_counter() - t0)

    def sequential() -> float:
        t0 = time.perf_counter()
        result = embedder.embed(texts, "passage")
        return result.tokens / (time.perf_counter() - t0)

    default_session = embedder.session
    sessions = {True: _session_with_spinning(embedder, True), False: _session_with_spinning(embedder, False)}
    spinning: dict[str, dict[str, list[float]]] = {
        "on": {"embed": [], "pipelined": []},
        "off": {"embed": [], "pipelined": []},
    }
    for _ in range(params["reps"]):
        for allow in (True, False):
            embedder.session = sessions[allow]
            key = "on" if allow else "off"
            spinning[key]["embed"].append(round(sequential(), 1))
            spinning[key]["pipelined"].append(round(pipelined(), 1))
    embedder.session = default_session
    spin_summary = {k: {mode: max(v) for mode, v in modes.items()} for k, modes in spinning.items()}
    faster = {
        mode: ("on" if spin_summary["on"][mode] >= spin_summary["off"][mode] else "off")
        for mode in ("embed", "pipelined")
    }
    return {
        "docs": len(texts),
        "tokens": int(tokens.lengths.sum()),
        "threads": embedder.threads,
        "reps": params["reps"],
        "default": {"token_budget": default_budget, "max_rows": default_rows},
        "grid": sorted(cells, key=lambda c: (c["token_budget"], c["max_rows"])),
        "best": best,
        "spinning": {"runs": spinning, "best": spin_summary, "faster": faster, "pipelined_chunk_rows": chunk},
    }
