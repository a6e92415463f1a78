"""`python -m e5ray.bench gpu-bench` and `gpu-actors` on the CPU (their own tests; the GPU runs are the same code on CUDA)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from e5ray.bench.commands import gpu_bench
from e5ray.bench.feed import FeedStats, PaddedBatch, make_batches
from e5ray.bench.gpu_throughput import GpuBenchConfig, _tuned
from e5ray.testing.shapes import SHAPES

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_benchmark_runs_every_stage_on_the_cpu_and_writes_its_results(tmp_path):
    argv = [
        "--device",
        "cpu",
        "--shape",
        "tiny",
        "--docs",
        "120",
        "--quick",
        "--min-steady-s",
        "0",
        "--sweep-budgets",
        "512",
        "--sweep-rows",
        "64,128",
        "--workdir",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "out"),
    ]
    assert gpu_bench.main(argv) == 0
    result = json.loads((tmp_path / "out" / "gpu_bench.json").read_text())
    assert (tmp_path / "out" / "gpu_bench.log").read_text().count("\n") > 10
    layers = SHAPES["tiny"].layers
    assert result["smoke"]["cosine_vs_cpu_fp32"]["min"] >= 0.999
    assert result["model"]["graph"] == "export" and result["model"]["fusion"]["attention"] == layers
    assert result["corpus"]["docs"] == 120
    for section in (result["main"], result["tuned"]):
        assert section["docs"] >= 120 and section["tokens"] > 0 and section["tokens_per_s"] > 0
        assert 0 <= section["tokenizer_share_of_wall"] <= 1
    # The fused copy against the plain export on the same texts.
    assert result["parity"]["cosine_device_vs_cpu_fp32"]["min"] >= 0.99999
    assert result["parity"]["cpu_fused_vs_unfused"] > 0
    assert len(result["variants"]) == 6
    for name, variant in result["variants"].items():
        assert "error" not in variant, name
        assert variant["docs"] == 120 and variant["tokens"] == result["variants"]["inline_1_session"]["tokens"]
    assert len(variant["session_busy_s"]) == 1
    assert len(result["variants"]["overlap_2_sessions"]["session_busy_s"]) == 2
    assert set(result["sweep"]) == {"512x64", "512x128"}


def test_every_variant_puts_each_vector_at_its_input_position(tmp_path):
    from e5ray import E5Embedder
    from e5ray.bench.feed import Runner, run_pipeline
    from e5ray.testing.export import write_export_model

    model = write_export_model(tmp_path / "m", arch="xlmr", seed=2)
    embedder = E5Embedder("tiny", model_path=model, threads=1, token_budget=256, max_batch_rows=8)
    texts = [("word " * (1 + (i * 13) % 70)).strip() + f" {i}" for i in range(90)]
    expected = embedder.embed_passages(texts)
    second = E5Embedder("tiny", model_path=model, threads=1)
    for runners, overlap in (
        ([Runner(embedder.session, "cpu")], False),
        ([Runner(embedder.session, "cpu")], True),
        ([Runner(embedder.session, "cpu", io_binding=True)], True),
        ([Runner(embedder.session, "cpu"), Runner(second.session, "cpu", io_binding=True)], True),
    ):
        out = np.full((len(texts), expected.shape[1]), np.nan, dtype=np.float32)
        result = run_pipeline(
            embedder, runners, texts, out, chunk_docs=32, token_budget=256, max_rows=8, overlap=overlap
        )
        np.testing.assert_allclose(out, expected, atol=1e-5)
        assert result.feed.docs == len(texts) and result.feed.batches > 3


def test_batches_cover_every_row_once_and_pad_per_batch(tmp_path):
    from e5ray import E5Embedder
    from e5ray.testing.export import write_export_model

    embedder = E5Embedder("tiny", model_path=write_export_model(tmp_path / "m", arch="bert"), threads=1)
    texts = [("mot " * (1 + i % 40)).strip() for i in range(50)]
    stats = FeedStats()
    batches: list[PaddedBatch] = list(make_batches(embedder, texts, 16, 128, 4, stats))
    rows = np.concatenate([b.indices for b in batches])
    assert sorted(rows.tolist()) == list(range(50))
    assert stats.tokens == sum(int(b.attention_mask.sum()) for b in batches)
    assert all(b.input_ids.shape[0] <= 4 for b in batches)
    assert all(b.padded_tokens <= 128 or b.input_ids.shape[0] == 1 for b in batches)  # one long row may exceed


def test_the_tuned_settings_are_the_fastest_measured():
    cfg = GpuBenchConfig()
    variants = {
        "overlap_1_session": {"tokens_per_s": 100.0},
        "overlap_1_session_iobinding": {"tokens_per_s": 90.0},
        "overlap_2_sessions": {"tokens_per_s": 120.0},
        "overlap_2_sessions_iobinding": {"error": "boom"},
        f"overlap_1_session_chunk_{cfg.big_chunk_docs}": {"tokens_per_s": 130.0},
    }
    sweep = {
        "65536x1024": {"tokens_per_s": 10.0},
        "131072x4096": {"tokens_per_s": 20.0},
        "262144x512": {"error": "oom"},
    }
    settings, sessions, io_binding = _tuned(cfg, variants, sweep)
    assert settings == {"chunk_docs": cfg.big_chunk_docs, "token_budget": 131072, "max_rows": 4096}
    assert (sessions, io_binding) == (2, False)


def test_the_actors_per_gpu_benchmark_runs_on_the_cpu_and_every_row_embeds_the_whole_corpus(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-m", "e5ray.bench", "gpu-actors", "--device", "cpu", "--shape", "tiny", "--docs", "150"]
        + ["--workdir", str(tmp_path / "work"), "--out", str(out)],
        check=True,
        timeout=300,
        cwd=ROOT,
    )
    runs = json.loads((out / "gpu_actors.json").read_text())["runs"]
    assert [r["actors"] for r in runs.values()] == [1, 1, 2, 3]
    assert len({r["tokens"] for r in runs.values()}) == 1 and all(r["tokens"] > 150 for r in runs.values())
    assert all(r["tokens_per_s"] > 0 and len(r["busy_s"]) == r["actors"] for r in runs.values())
