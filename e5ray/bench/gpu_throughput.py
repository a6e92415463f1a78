"""The GPU throughput benchmark behind `python -m e5ray.bench gpu-bench`: one prepared run, every variant side by side.

On one GPU it builds an export-shaped random-weight encoder (`e5ray.testing.export`,
e5-large by default, weights in external data), lets E5Embedder make its fused fp16 copy,
and embeds the synthetic lognormal corpus of `e5ray.bench.corpus` with tokenisation
included, in stages whose results are written to JSON as soon as each ends (a run cut
short still leaves what it measured):

1. main: the baseline, job-shaped (tokenise the next chunk while the GPU runs this one),
   whole passes over the corpus until the steady section lasts `min_steady_s`, with GPU
   utilisation sampled and the tokeniser's share of wall time;
2. parity: GPU fp16 vs CPU fp32 (fused) on a sample, and the CPU's tokens/s beside it;
3. variants on one subset: inline (no overlap) vs overlapped, IO binding, two sessions;
   larger chunks;
4. sweep: token budget x max rows on pre-built batches (device only, no tokeniser);
5. tokeniser: tokens/s on all threads and on one.

`--device cpu --shape tiny` runs every stage on the CPU (fp32) so the benchmark is tested
where there is no GPU. Timings are wall clock; tokens are real (unpadded) tokens.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from e5ray.bench.ceiling import H100_DENSE_FP16_FLOPS, flops_per_token
from e5ray.bench.config import DEFAULT_ARCH
from e5ray.bench.corpus import length_stats, make_corpus
from e5ray.bench.feed import GpuSampler, Runner, make_batches, run_pipeline
from e5ray.testing.shapes import SHAPES

Log = Callable[[str], None]


@dataclass
class GpuBenchConfig:
    device: str = "gpu"  # gpu: fp16 on CUDA; cpu: fp32 on the CPU (a test of the benchmark)
    shape: str = "e5-large"
    arch: str | None = None
    graph: str = "export"
    docs: int = 100_000
    min_steady_s: float = 30.0
    # The baseline: e5ray's GPU settings before this benchmark was first run (one session,
    # 2,048-row chunks, 65,536 x 1,024 batches). The job's defaults now follow its "tuned" result.
    chunk_docs: int = 2048
    token_budget: int = 65536
    max_rows: int = 1024
    variant_docs: int = 30_000
    big_chunk_docs: int = 16_384
    sweep_docs: int = 20_000
    sweep_budgets: tuple[int, ...] = (16_384, 32_768, 65_536, 131_072, 262_144)
    sweep_rows: tuple[int, ...] = (512, 1024, 4096)
    parity_docs: int = 200
    cpu_fusion_reps: int = 2  # --device cpu: fused vs unfused speed on the parity sample
    tokenizer_docs: int = 2_000
    time_budget_s: float = 420.0  # optional stages are skipped past this (the lease is short)
    seed: int = 0
    gpu_id: int = 0
    workdir: str = "/tmp/e5ray-gpu-bench"


class Report:
    """Results dict written to `path` after every stage, and a log written line by line."""

    def __init__(self, out_dir: str | None, log: Log) -> None:
        self.data: dict[str, Any] = {}
        self.start = time.perf_counter()
        self.out = Path(out_dir) if out_dir else None
        self._print = log
        if self.out:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "gpu_bench.log").write_text("")

    def log(self, line: str) -> None:
        stamped = f"[{time.perf_counter() - self.start:7.1f}s] {line}"
        self._print(stamped)
        if self.out:
            with open(self.out / "gpu_bench.log", "a") as f:
                f.write(stamped + "\n")

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.data["elapsed_s"] = round(time.perf_counter() - self.start, 1)
        if self.out:
            tmp = self.out / "gpu_bench.json.tmp"
            tmp.write_text(json.dumps(self.data, indent=1, default=str))
            os.replace(tmp, self.out / "gpu_bench.json")

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def _gpu_name(gpu_id: int) -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--id={gpu_id}", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _machine(cfg: GpuBenchConfig) -> dict[str, Any]:
    import onnxruntime as ort
    import tokenizers

    from e5ray.model.embedder import available_cpus

    return {
        "gpu": _gpu_name(cfg.gpu_id) if cfg.device == "gpu" else None,
        "cpus": available_cpus(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "onnxruntime_file": ort.__file__,
        "providers": ort.get_available_providers(),
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
    }


def _cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}


def _embedder(cfg: GpuBenchConfig, model_dir: Path, **overrides: Any) -> Any:
    from e5ray.model.embedder import E5Embedder

    kwargs: dict[str, Any] = {
        "model": f"e5ray-bench/{cfg.shape}",
        "model_path": model_dir,
        "device": cfg.device,
        "precision": "fp16" if cfg.device == "gpu" else "fp32",
        "token_budget": cfg.token_budget,
        "max_batch_rows": cfg.max_rows,
        "gpu_id": cfg.gpu_id,
    }
    kwargs.update(overrides)
    return E5Embedder(**kwargs)


def _runner(cfg: GpuBenchConfig, embedder: Any, io_binding: bool = False) -> Runner:
    return Runner(embedder.session, "cuda" if cfg.device == "gpu" else "cpu", io_binding, cfg.gpu_id)


def run_gpu_bench(cfg: GpuBenchConfig, out_dir: str | None = None, log: Log = print) -> dict[str, Any]:
    """Run every stage; returns (and writes to `out_dir`/gpu_bench.json) the results."""
    from e5ray.model.fusion import read_report
    from e5ray.testing.export import write_model

    if cfg.device not in ("gpu", "cpu"):
        raise ValueError(f"unknown device {cfg.device!r}; valid: gpu, cpu")
    if cfg.shape not in SHAPES:
        raise ValueError(f"unknown shape {cfg.shape!r}; valid: {', '.join(SHAPES)}")
    report = Report(out_dir, log)
    report.put("config", asdict(cfg))
    if cfg.device == "gpu":
        from e5ray.model.embedder import require_cuda

        try:  # PyTorch's CUDA wheels bring the CUDA and cuDNN libraries onnxruntime-gpu links to
            import torch  # noqa: F401
        except ImportError:
            pass
        require_cuda()
    report.put("machine", _machine(cfg))
    report.log(f"machine: {report.data['machine']}")
    report.put("smoke", _smoke(cfg))
    report.log(f"smoke (tiny model, device vs CPU fp32): {report.data['smoke']}")

    # Model: export-shaped, fp32 with external data when large; E5Embedder makes the fp16 copy.
    arch = cfg.arch or DEFAULT_ARCH[cfg.shape]
    shape = SHAPES[cfg.shape]
    model_dir = Path(cfg.workdir) / f"model-{cfg.graph}-{arch}-{cfg.shape}"
    t0 = time.perf_counter()
    if not (model_dir / "config.json").is_file():
        write_model(model_dir, graph=cfg.graph, arch=arch, shape=cfg.shape, seed=cfg.seed)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    main = _embedder(cfg, model_dir)
    prepare_s = time.perf_counter() - t0
    fusion = read_report(main.onnx_path)
    report.put(
        "model",
        {
            "shape": cfg.shape,
            "arch": arch,
            "graph": cfg.graph,
            **asdict(shape),
            "file": str(main.onnx_path),
            "precision": main.precision,
            "build_s": round(build_s, 1),
            "prepare_and_load_s": round(prepare_s, 1),
            "fusion": asdict(fusion) if fusion else None,
            "providers": main.session.get_providers(),
        },
    )
    report.log(f"model {cfg.shape} {arch} {cfg.graph}: built {build_s:.1f}s, fp16/fused + load {prepare_s:.1f}s")
    report.log(f"fusion: {fusion.summary() if fusion else 'no report (unfused source loaded)'}")

    # Corpus, and tokeniser throughput on every thread (this is also the length census).
    t0 = time.perf_counter()
    texts = make_corpus(cfg.docs, main.files.tokenizer_path, seed=cfg.seed)
    corpus_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lengths = main.tokenize(texts).lengths
    tokenize_all_s = time.perf_counter() - t0
    stats = length_stats(lengths)
    seq_len = stats["token_weighted_mean"]
    fpt = flops_per_token(shape, seq_len)
    ceiling = H100_DENSE_FP16_FLOPS / fpt
    report.put("corpus", {**stats, "make_s": round(corpus_s, 1)})
    report.log(f"corpus: {stats} (made in {corpus_s:.1f}s)")
    sample = texts[: cfg.tokenizer_docs]
    t0 = time.perf_counter()
    one = sum(len(main.tokenizer.encode("passage: " + t).ids) for t in sample)
    one_s = time.perf_counter() - t0
    tokenizer = {
        "all_threads_tokens_per_s": round(stats["tokens"] / tokenize_all_s, 1),
        "one_thread_tokens_per_s": round(one / one_s, 1),
        "threads": report.data["machine"]["cpus"],
    }
    report.put("tokenizer", tokenizer)
    report.log(f"tokeniser: {tokenizer}")
    report.put("ceiling", {"peak_flops": H100_DENSE_FP16_FLOPS, "flops_per_token": fpt, "tokens_per_s": ceiling})

    def timed(name: str, runners: list[Runner], docs: list[str], **kwargs: Any) -> dict[str, Any]:
        out = np.empty((len(docs), shape.hidden), dtype=np.float32)
        with GpuSampler(gpu_id=cfg.gpu_id) if cfg.device == "gpu" else _NoSampler() as sampler:
            result = run_pipeline(main, runners, docs, out, **kwargs).summary()
        result["gpu_util"] = sampler.summary()
        result["fraction_of_peak"] = round(result["tokens_per_s"] / ceiling, 4) if result["tokens_per_s"] else None
        report.log(
            f"{name}: {result['tokens_per_s']:,.0f} tokens/s, {result['seconds']:.2f}s, {result['docs']} docs, "
            f"padding {result['padding_share']}, tokeniser share {result['tokenizer_share_of_wall']}, "
            f"GPU util {result['gpu_util'].get('mean')}, peak fraction {result['fraction_of_peak']}"
        )
        return result

    base = {"chunk_docs": cfg.chunk_docs, "token_budget": cfg.token_budget, "max_rows": cfg.max_rows}
    runner = _runner(cfg, main)
    timed("warm-up", [runner], texts[: min(2000, len(texts))], **base)

    def steady(name: str, runners: list[Runner], settings: dict[str, Any]) -> dict[str, Any]:
        """Whole passes over the corpus until the section has lasted min_steady_s."""
        passes: list[dict[str, Any]] = []
        with GpuSampler(gpu_id=cfg.gpu_id) if cfg.device == "gpu" else _NoSampler() as sampler:
            while not passes or sum(p["seconds"] for p in passes) < cfg.min_steady_s:
                passes.append(timed(f"{name} pass {len(passes) + 1}", runners, texts, **settings))
        seconds = sum(p["seconds"] for p in passes)
        tokens = sum(p["tokens"] for p in passes)
        result = {
            "passes": passes,
            "docs": sum(p["docs"] for p in passes),
            "tokens": tokens,
            "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1),
            "fraction_of_peak": round(tokens / seconds / ceiling, 4),
            "tokenizer_share_of_wall": round(sum(p["tokenize_s"] for p in passes) / seconds, 4),
            "gpu_util": sampler.summary(),
            "sessions": len(runners),
            "io_binding": runners[0].io_binding,
            **settings,
        }
        report.log(
            f"{name.upper()}: {result['tokens_per_s']:,.0f} tokens/s over {result['docs']:,} docs in {seconds:.1f}s "
            f"(fraction of peak {result['fraction_of_peak']}, GPU util {result['gpu_util'].get('mean')}, "
            f"tokeniser share {result['tokenizer_share_of_wall']}; {settings}, sessions {len(runners)}, "
            f"IO binding {runners[0].io_binding})"
        )
        return result

    # 1. The production settings (E5Embedder's GPU defaults, the job's chunk size), steady.
    report.put("main", steady("main", [runner], base))

    # 2. Parity: the device's vectors vs CPU fp32 of the plain export (unfused: the reference).
    parity_texts = texts[: cfg.parity_docs]
    device_vectors = main.embed_passages(parity_texts)
    cpu = _embedder(
        cfg, model_dir, device="cpu", precision="fp32", token_budget=None, max_batch_rows=None, fuse_attention=False
    )
    t0 = time.perf_counter()
    cpu_result = cpu.embed(parity_texts)
    cpu_s = time.perf_counter() - t0
    parity = {
        "docs": len(parity_texts),
        "device_file": str(main.onnx_path),
        "cpu_file": str(cpu.onnx_path),
        "cosine_device_vs_cpu_fp32": _cosines(device_vectors, cpu_result.vectors),
        "cpu_fp32_tokens_per_s": round(cpu_result.tokens / cpu_s, 1),
        "cpu_threads": cpu.threads,
    }
    if cfg.device == "cpu":
        # Fused copy vs plain export on the same texts and cores, alternated, best of `reps`.
        best = {"fused": 0.0, "unfused": 0.0}
        for _ in range(cfg.cpu_fusion_reps):
            for name, embedder in (("unfused", cpu), ("fused", main)):
                t0 = time.perf_counter()
                result = embedder.embed(parity_texts)
                best[name] = max(best[name], result.tokens / (time.perf_counter() - t0))
        parity["cpu_tokens_per_s_best"] = {k: round(v, 1) for k, v in best.items()}
        parity["cpu_fused_vs_unfused"] = round(best["fused"] / best["unfused"], 3)
    report.put("parity", parity)
    report.log(f"parity: {parity}")
    del cpu

    # 3. Variants on one subset, side by side.
    subset = texts[: cfg.variant_docs]
    variants: dict[str, Any] = {}
    plan: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("inline_1_session", lambda: timed("inline, 1 session", [runner], subset, overlap=False, **base)),
        ("overlap_1_session", lambda: timed("overlap, 1 session", [runner], subset, **base)),
        (
            "overlap_1_session_iobinding",
            lambda: timed("overlap, IO binding", [_runner(cfg, main, True)], subset, **base),
        ),
    ]
    second: list[Any] = []

    def two_sessions(io_binding: bool) -> dict[str, Any]:
        if not second:
            second.append(_embedder(cfg, model_dir))
        pair = [_runner(cfg, main, io_binding), _runner(cfg, second[0], io_binding)]
        return timed(f"overlap, 2 sessions{', IO binding' if io_binding else ''}", pair, subset, **base)

    plan += [
        ("overlap_2_sessions", lambda: two_sessions(False)),
        ("overlap_2_sessions_iobinding", lambda: two_sessions(True)),
        (
            f"overlap_1_session_chunk_{cfg.big_chunk_docs}",
            lambda: timed(
                f"overlap, chunk {cfg.big_chunk_docs}",
                [runner],
                subset,
                chunk_docs=cfg.big_chunk_docs,
                token_budget=cfg.token_budget,
                max_rows=cfg.max_rows,
            ),
        ),
    ]
    for key, run in plan:
        if report.elapsed() > cfg.time_budget_s:
            variants[key] = {"skipped": f"time budget {cfg.time_budget_s}s spent"}
            continue
        try:
            variants[key] = run()
        except Exception as exc:  # one variant failing must not lose the others
            variants[key] = {"error": f"{type(exc).__name__}: {exc}"}
            report.log(f"{key}: FAILED {variants[key]['error']}")
        report.put("variants", variants)
    second.clear()

    # 4. Device-only sweep over batch shapes: pre-built batches, no tokeniser in the loop.
    sweep: dict[str, Any] = {}
    if report.elapsed() <= cfg.time_budget_s:
        from e5ray.bench.feed import FeedStats

        sweep_texts = texts[: cfg.sweep_docs]
        for budget in cfg.sweep_budgets:
            for rows in cfg.sweep_rows:
                if report.elapsed() > cfg.time_budget_s:
                    sweep[f"{budget}x{rows}"] = {"skipped": "time budget spent"}
                    continue
                feed = FeedStats()
                batches = list(make_batches(main, sweep_texts, len(sweep_texts), budget, rows, feed))
                try:
                    runner(batches[0])
                    runner.busy_s = 0.0
                    t0 = time.perf_counter()
                    for batch in batches:
                        runner(batch)
                    seconds = time.perf_counter() - t0
                    sweep[f"{budget}x{rows}"] = {
                        "tokens_per_s": round(feed.tokens / seconds, 1),
                        "padded_tokens_per_s": round(feed.padded_tokens / seconds, 1),
                        "padding_share": round(1 - feed.tokens / feed.padded_tokens, 4),
                        "batches": feed.batches,
                        "seconds": round(seconds, 3),
                    }
                except Exception as exc:  # e.g. out of device memory at the largest shapes
                    sweep[f"{budget}x{rows}"] = {"error": f"{type(exc).__name__}: {exc}"}
                report.log(f"sweep budget {budget} rows {rows}: {sweep[f'{budget}x{rows}']}")
                report.put("sweep", sweep)
    # 5. The best of what was measured, steady: batch shape from the sweep, sessions, IO
    # binding and chunk size from the variants.
    if report.elapsed() <= cfg.time_budget_s:
        tuned_settings, sessions, io_binding = _tuned(cfg, variants, sweep)
        runners = [_runner(cfg, main, io_binding)]
        if sessions == 2:
            runners.append(_runner(cfg, _embedder(cfg, model_dir), io_binding))
        report.put("tuned", steady("tuned", runners, tuned_settings))
    else:
        report.put("tuned", {"skipped": f"time budget {cfg.time_budget_s}s spent"})
    report.put("total_s", round(report.elapsed(), 1))
    report.log(f"done in {report.elapsed():.0f}s")
    return report.data


def _smoke(cfg: GpuBenchConfig) -> dict[str, Any]:
    """Seconds-long check on a tiny export-shaped model before the large one is written:
    the device's kernels run and agree with the CPU (raises RuntimeError otherwise)."""
    from e5ray.testing.export import write_model
    from e5ray.testing.words import sample_words

    model_dir = Path(cfg.workdir) / "smoke-xlmr-tiny"
    if not (model_dir / "config.json").is_file():
        write_model(model_dir, graph="export", arch="xlmr", shape="tiny", seed=1)
    words = sample_words()
    texts = [" ".join(words[i : i + 1 + (i * 7) % 90]) for i in range(64)]
    t0 = time.perf_counter()
    try:
        device = _embedder(cfg, model_dir).embed_passages(texts)
    except Exception as exc:
        raise RuntimeError(f"the tiny model failed on {cfg.device}: {type(exc).__name__}: {exc}") from exc
    cpu = _embedder(cfg, model_dir, device="cpu", precision="fp32", token_budget=None, max_batch_rows=None)
    cos = _cosines(device, cpu.embed_passages(texts))
    if cos["min"] < 0.999:
        raise RuntimeError(f"the tiny model's vectors on {cfg.device} disagree with the CPU's: cosine {cos}")
    return {"cosine_vs_cpu_fp32": cos, "seconds": round(time.perf_counter() - t0, 1)}


def _rate(entry: Any) -> float:
    return float(entry.get("tokens_per_s") or 0.0) if isinstance(entry, dict) else 0.0


def _tuned(cfg: GpuBenchConfig, variants: dict[str, Any], sweep: dict[str, Any]) -> tuple[dict[str, Any], int, bool]:
    """(pipeline settings, sessions, IO binding) of the fastest measured options."""
    budget, rows = cfg.token_budget, cfg.max_rows
    measured = {k: _rate(v) for k, v in sweep.items() if _rate(v) > 0}
    if measured:
        best = max(measured, key=lambda k: measured[k])
        budget, rows = (int(v) for v in best.split("x"))
    options = {
        (1, False): _rate(variants.get("overlap_1_session")),
        (1, True): _rate(variants.get("overlap_1_session_iobinding")),
        (2, False): _rate(variants.get("overlap_2_sessions")),
        (2, True): _rate(variants.get("overlap_2_sessions_iobinding")),
    }
    sessions, io_binding = max(options, key=lambda k: options[k]) if any(options.values()) else (1, False)
    big = _rate(variants.get(f"overlap_1_session_chunk_{cfg.big_chunk_docs}"))
    chunk = cfg.big_chunk_docs if big > options[(1, False)] else cfg.chunk_docs
    return {"chunk_docs": chunk, "token_budget": budget, "max_rows": rows}, sessions, io_binding


class _NoSampler:
    """Stands in for GpuSampler on the CPU."""

    def __enter__(self) -> _NoSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def summary(self) -> dict[str, Any]:
        return {"samples": 0, "error": "no GPU"}
