"""Feeding an accelerator: tokenise ahead in one thread, run ONNX sessions in others.

The shape of e5ray's GPU worker (read and tokenise the next chunk while the device runs
this one), made measurable piece by piece for `e5ray.bench.gpu_throughput`:

* `make_batches` turns texts into padded, length-sorted token-budget batches chunk by
  chunk, timing tokenisation and array building separately;
* `run_pipeline` runs one producer thread and one consumer thread per session (each
  session its own model copy and CUDA stream, as two actors on one GPU would have), or
  everything inline (`overlap=False`: tokenise a chunk, then run it, as E5Embedder.embed does);
* `Runner` runs one batch, with plain numpy feeds or with IO binding (inputs copied to the
  device before the run, outputs left there until copied back);
* `GpuSampler` samples `nvidia-smi` utilisation in a thread.

Invariant: vectors land at their input positions, whatever the batch order or the
number of consumers, so every variant's output can be compared with every other's.
Tokenizers and onnxruntime both release the GIL, which is what makes threads enough here.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from e5ray.model.batching import plan_batches
from e5ray.model.pooling import POOLED_OUTPUT, e5_pool


@dataclass
class PaddedBatch:
    """One batch ready for the session: global row positions and int64 arrays."""

    indices: np.ndarray
    input_ids: np.ndarray
    attention_mask: np.ndarray
    tokens: int

    @property
    def padded_tokens(self) -> int:
        return int(self.input_ids.size)


@dataclass
class FeedStats:
    tokenize_s: float = 0.0
    build_s: float = 0.0
    docs: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0


def make_batches(
    embedder: Any,
    texts: Sequence[str],
    chunk_docs: int,
    token_budget: int,
    max_rows: int,
    stats: FeedStats,
    prefix: str = "passage",
) -> Iterator[PaddedBatch]:
    """Tokenise `texts` chunk by chunk (E5Embedder.tokenize) and yield padded batches."""
    pad_id = embedder.pad_id
    for start in range(0, len(texts), chunk_docs):
        t0 = time.perf_counter()
        tokens = embedder.tokenize(texts[start : start + chunk_docs], prefix)
        t1 = time.perf_counter()
        stats.tokenize_s += t1 - t0
        built = []
        for plan in plan_batches(tokens.lengths, token_budget, max_rows):
            ids = np.full((len(plan.indices), plan.seq_len), pad_id, dtype=np.int64)
            for row, i in enumerate(plan.indices):
                seq = tokens.ids[i]
                ids[row, : len(seq)] = seq
            lengths = tokens.lengths[plan.indices]
            mask = (np.arange(plan.seq_len)[None, :] < lengths[:, None]).astype(np.int64)
            built.append(PaddedBatch(plan.indices + start, ids, mask, int(lengths.sum())))
        stats.build_s += time.perf_counter() - t1
        stats.docs += len(tokens)
        for batch in built:
            stats.tokens += batch.tokens
            stats.padded_tokens += batch.padded_tokens
            stats.batches += 1
            yield batch


class Runner:
    """Runs batches through one session; `io_binding` binds inputs and outputs on `device`."""

    def __init__(self, session: Any, device: str = "cuda", io_binding: bool = False, gpu_id: int = 0) -> None:
        self.session = session
        self.device = device
        self.io_binding = io_binding
        self.gpu_id = gpu_id
        names = {o.name for o in session.get_outputs()}
        self.output = POOLED_OUTPUT if POOLED_OUTPUT in names else "last_hidden_state"
        self.input_names = {i.name for i in session.get_inputs()}
        self.busy_s = 0.0

    def __call__(self, batch: PaddedBatch) -> np.ndarray:
        feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(batch.input_ids)
        t0 = time.perf_counter()
        if self.io_binding:
            out = self._run_bound(feed)
        else:
            out = self.session.run([self.output], feed)[0]
        self.busy_s += time.perf_counter() - t0
        return out if self.output == POOLED_OUTPUT else e5_pool(out, batch.attention_mask)

    def _run_bound(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, self.device, self.gpu_id))
        binding.bind_output(self.output, self.device, self.gpu_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


@dataclass
class PipelineResult:
    seconds: float
    feed: FeedStats
    busy_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        f = self.feed
        return {
            "seconds": round(self.seconds, 3),
            "docs": f.docs,
            "tokens": f.tokens,
            "padded_tokens": f.padded_tokens,
            "padding_share": round(1 - f.tokens / f.padded_tokens, 4) if f.padded_tokens else None,
            "batches": f.batches,
            "tokens_per_s": round(f.tokens / self.seconds, 1) if self.seconds else None,
            "tokenize_s": round(f.tokenize_s, 3),
            "build_s": round(f.build_s, 3),
            "tokenizer_share_of_wall": round(f.tokenize_s / self.seconds, 4) if self.seconds else None,
            "session_busy_s": [round(b, 3) for b in self.busy_s],
        }


def run_pipeline(
    embedder: Any,
    runners: Sequence[Runner],
    texts: Sequence[str],
    out: np.ndarray,
    *,
    chunk_docs: int = 2048,
    token_budget: int = 65536,
    max_rows: int = 1024,
    overlap: bool = True,
    queue_batches: int = 16,
) -> PipelineResult:
    """Embed `texts` into `out` (n, dim) and time it (wall clock, tokenisation included)."""
    stats = FeedStats()
    for runner in runners:
        runner.busy_s = 0.0
    start = time.perf_counter()
    batches = make_batches(embedder, texts, chunk_docs, token_budget, max_rows, stats)
    if not overlap:
        if len(runners) != 1:
            raise ValueError(f"overlap=False runs one session inline; got {len(runners)} sessions")
        for batch in batches:
            out[batch.indices] = runners[0](batch)
        return PipelineResult(time.perf_counter() - start, stats, [runners[0].busy_s])

    pending: queue.Queue[PaddedBatch | None] = queue.Queue(maxsize=queue_batches)
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for batch in batches:
                pending.put(batch)
        except BaseException as exc:  # surfaced below; the consumers must still stop
            errors.append(exc)
        finally:
            for _ in runners:
                pending.put(None)

    def consume(runner: Runner) -> None:
        while (batch := pending.get()) is not None:
            try:
                out[batch.indices] = runner(batch)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=produce, daemon=True)]
    threads += [threading.Thread(target=consume, args=(r,), daemon=True) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return PipelineResult(time.perf_counter() - start, stats, [r.busy_s for r in runners])


class GpuSampler:
    """`nvidia-smi --query-gpu=utilization.gpu` every `interval` s while running; empty without one."""

    def __init__(self, interval: float = 0.5, gpu_id: int = 0) -> None:
        self.interval = interval
        self.gpu_id = gpu_id
        self.samples: list[float] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        command = [
            "nvidia-smi",
            f"--id={self.gpu_id}",
            "--query-gpu=utilization.gpu",
            "--format=csv,noheader,nounits",
        ]
        while not self._stop.is_set():
            try:
                text = subprocess.run(command, capture_output=True, text=True, timeout=5).stdout.strip()
                self.samples.append(float(text.splitlines()[0]))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"samples": 0, "error": self.error}
        values = np.asarray(self.samples)
        return {
            "samples": int(values.size),
            "mean": round(float(values.mean()), 1),
            "median": float(np.median(values)),
            "min": float(values.min()),
            "error": self.error,
        }
