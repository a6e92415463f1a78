"""jobs/benchmark.py on the tiny model: every field present, values sane. No timing assertions
(the machines are shared and noisy): only that rates are positive and finite."""

from __future__ import annotations

import ast
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from e5ray.bench.ceiling import flops_per_token, matmul_throughput
from e5ray.bench.config import BenchConfig
from e5ray.bench.corpus import (
    fixed_batch_padded_tokens,
    length_stats,
    lognormal_token_targets,
    make_corpus,
    token_lengths,
)
from e5ray.testing import SHAPES, write_test_model

REPO = Path(__file__).resolve().parents[2]


def load_job_module():
    spec = importlib.util.spec_from_file_location("jobs_benchmark", REPO / "jobs" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_test_model(tmp_path_factory.mktemp("bench-tiny"), arch="bert", shape="tiny")


def test_lognormal_targets_have_the_asked_median_and_p95():
    targets = lognormal_token_targets(20_000, np.random.default_rng(0))
    assert targets.min() >= 8 and targets.max() <= 512
    assert 37 <= np.median(targets) <= 43
    assert 180 <= np.percentile(targets, 95) <= 220
    assert (targets == 512).sum() > 0  # a tail that reaches the max length


def test_corpus_lengths_are_measured_with_the_tokenizer(tiny_dir):
    texts = make_corpus(400, tiny_dir / "tokenizer.json", seed=3)
    assert len(texts) == 400 and all(isinstance(t, str) and t for t in texts)
    assert make_corpus(400, tiny_dir / "tokenizer.json", seed=3) == texts  # deterministic
    assert make_corpus(50, tiny_dir / "tokenizer.json", seed=3) == texts[:50]  # runs of any size share texts
    stats = length_stats(token_lengths(tiny_dir / "tokenizer.json", texts))
    assert stats["max"] <= 512 and stats["min"] >= 8
    assert 30 <= stats["median"] <= 55
    assert 140 <= stats["p95"] <= 280
    assert stats["token_weighted_mean"] > stats["mean"]


def test_flops_and_padding_helpers():
    small = SHAPES["e5-small"]
    h, f = 384, 1536
    assert flops_per_token(small, 0) == 12 * 2 * (4 * h * h + 2 * h * f)
    assert flops_per_token(small, 100) - flops_per_token(small, 0) == 12 * 4 * 100 * h
    assert fixed_batch_padded_tokens([5, 10, 3, 4], batch_size=2) == 2 * 10 + 2 * 4
    assert fixed_batch_padded_tokens([7], batch_size=256) == 7


def test_matmul_throughput_measures_something():
    for dtype in ("fp32", "int8"):
        m = matmul_throughput(32, 128, threads=1, rows=64, reps=3, dtype=dtype)
        assert m["gflops_best"] > 0 and m["gflops_best"] >= m["gflops_median"] > 0


def _check_contestant(r, docs):
    assert r["docs"] == docs
    assert r["tokens"] > 0 and r["padded_tokens"] >= r["tokens"]
    assert 0 <= r["padding_share"] < 1
    assert r["seconds"] > 0 and math.isfinite(r["tokens_per_s"]) and r["tokens_per_s"] > 0


def test_benchmark_end_to_end_on_the_tiny_model(tmp_path, capsys):
    job = load_job_module()
    out = tmp_path / "result.json"
    args = job.parse_args(
        [
            "--shape",
            "tiny",
            "--docs",
            "36",
            "--rss-scale",
            "2",
            "--shard-rows",
            "12",
            "--sweep",
            "--sweep-docs",
            "24",
            "--sweep-budgets",
            "256,1024",
            "--sweep-rows",
            "16,64",
            "--sweep-reps",
            "1",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ]
    )
    assert job.main(args) == 0
    printed = capsys.readouterr().out
    for needle in (
        "fastembed TextEmbedding.embed",
        "E5Embedder in-process",
        "e5ray job",
        "ceiling",
        "ratios: 2/1",
        "goals:",
        "sweep:",
        "allow_spinning",
    ):
        assert needle in printed

    result = json.loads(out.read_text())
    assert set(result) >= {
        "config",
        "machine",
        "model",
        "corpus",
        "ceiling",
        "contestants",
        "ratios",
        "agreement",
        "rss_scale",
        "sweep",
        "goals",
        "seconds_total",
    }
    stats = result["corpus"]["stats"]
    assert stats["docs"] == 36 and 8 <= stats["median"] <= stats["p95"] <= stats["max"] <= 512
    c = result["contestants"]
    assert set(c) == {"fastembed", "embedder", "job"}
    tokens = c["embedder"]["tokens"]
    for name in c:
        _check_contestant(c[name], 36)
        assert c[name]["tokens"] == tokens  # one definition of a real token for all
    assert c["fastembed"]["max_length"] == 512
    assert c["fastembed"]["own_tokens"] == tokens
    assert c["fastembed"]["own_padded_tokens"] == c["fastembed"]["padded_tokens"]
    # Sorted batches never pad more than input-order batches of 256.
    assert c["embedder"]["padded_tokens"] <= c["fastembed"]["padded_tokens"]
    assert c["job"]["shards"] == 3 and c["job"]["ray_cpus"] >= 1
    for name in ("fastembed", "embedder"):
        assert c[name]["peak_rss_mb"] > 10
    rss = c["job"]["rss"]
    assert rss["actors"] >= 1 and rss["actor_mb"] > 10 and rss["driver_mb"] > 10
    assert rss["job_mb"] >= rss["actor_mb"] and rss["tree_total_mb"] >= rss["job_mb"]

    ceiling = result["ceiling"]
    assert ceiling["matmul"]["gflops_best"] > 0 and ceiling["tokens_per_s"] > 0
    assert ceiling["flops_per_token"] == flops_per_token(SHAPES["tiny"], ceiling["seq_len"])
    for name, value in result["ratios"].items():
        assert value is not None and value > 0, name
    for name in ("fastembed_vs_e5ray", "job_vs_embedder"):
        assert result["agreement"][name]["min"] >= 0.9999, name

    scale = result["rss_scale"]
    assert scale["docs"] == [36, 72] and scale["job_ratio"] > 0 and all(v > 0 for v in scale["job_mb"])

    sweep = result["sweep"]
    assert len(sweep["grid"]) == 4
    assert {(g["token_budget"], g["max_rows"]) for g in sweep["grid"]} == {(256, 16), (256, 64), (1024, 16), (1024, 64)}
    assert all(g["tokens_per_s"] > 0 and 0 <= g["padding_share"] < 1 for g in sweep["grid"])
    assert set(sweep["spinning"]["best"]) == {"on", "off"}
    assert set(result["goals"]) == {
        "job_vs_fastembed",
        "job_vs_embedder",
        "job_vs_embedder_at_scale",
        "embedder_vs_ceiling",
        "padding_share",
        "job_rss_ratio",
    }
    for goal in result["goals"].values():
        assert goal["met"] in (True, False)


def test_int8_reports_speed_and_agreement(tmp_path):
    job = load_job_module()
    out = tmp_path / "int8.json"
    args = job.parse_args(
        [
            "--shape",
            "tiny",
            "--docs",
            "24",
            "--precision",
            "int8",
            "--skip-fastembed",
            "--skip-job",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ]
    )
    assert job.main(args) == 0
    result = json.loads(out.read_text())
    i8 = result["int8"]
    assert i8["tokens_per_s"] > 0 and i8["fp32_tokens_per_s"] > 0 and i8["speedup_vs_fp32"] > 0
    assert -1 <= i8["min_cosine_vs_fp32"] <= i8["mean_cosine_vs_fp32"] <= 1.0 + 1e-6
    assert result["contestants"]["embedder"]["precision"] == "int8"
    assert result["contestants"]["embedder_fp32"]["precision"] == "fp32"
    assert result["ceiling"]["int8"]["tokens_per_s"] > 0
    assert i8["quantize_seconds"] >= 0 and i8["quantize_peak_rss_mb"] > 10


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this machine has CUDA")
def test_gpu_path_fails_fast_without_cuda(tmp_path, capsys):
    job = load_job_module()
    args = job.parse_args(["--device", "gpu", "--workdir", str(tmp_path / "work")])
    assert job.main(args) == 2
    err = capsys.readouterr().err
    assert "CUDA" in err and "onnxruntime" in err
    assert not (tmp_path / "work").exists()  # failed before writing the 2 GB model


def test_config_rejects_bad_values(tmp_path):
    from e5ray.bench.run import run_benchmark

    with pytest.raises(ValueError, match="device"):
        run_benchmark(BenchConfig(device="tpu"))
    with pytest.raises(ValueError, match="arch"):
        BenchConfig(arch="gpt").resolved_arch()
    with pytest.raises(ValueError, match="precision"):
        run_benchmark(BenchConfig(shape="tiny", precision="fp16", workdir=str(tmp_path)))


def test_model_path_benchmarks_an_export_laid_out_like_optimum(tmp_path):
    # onnx/model.onnx below the tokenizer files, as Optimum and transformers.js export it.
    export = write_test_model(tmp_path / "export", arch="xlmr", shape="tiny", onnx_name="onnx/model.onnx", seed=5)
    job = load_job_module()
    out = tmp_path / "export.json"
    args = job.parse_args(
        [
            "--model-path",
            str(export),
            "--docs",
            "20",
            "--skip-job",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ]
    )
    assert job.main(args) == 0
    result = json.loads(out.read_text())
    model = result["model"]
    assert model["source"] == "model_path" and model["dir"] == str(export.resolve())
    assert model["onnx_file"] == "onnx/model.onnx" and model["arch"] == "xlmr"
    assert (model["layers"], model["hidden"], model["heads"]) == (2, 32, 4)
    assert not (tmp_path / "work" / "model-xlmr-tiny").exists()  # no synthetic model was written
    c = result["contestants"]
    assert set(c) == {"fastembed", "embedder"}
    for name in c:
        _check_contestant(c[name], 20)
    assert result["agreement"]["fastembed_vs_e5ray"]["min"] >= 0.9999
    assert result["ceiling"]["flops_per_token"] == flops_per_token(SHAPES["tiny"], result["ceiling"]["seq_len"])


def test_model_path_refuses_a_shape_or_arch_of_its_own(tmp_path, capsys):
    job = load_job_module()
    with pytest.raises(SystemExit):
        job.parse_args(["--model-path", str(tmp_path), "--shape", "e5-small"])
    assert "--model-path takes the shape and arch" in capsys.readouterr().err


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


# The only modules of e5ray/bench that may import Ray, and why: the `scale` subcommand measures
# the job on Ray in the benchmark's own process (a local Ray of its own, a simulated cluster,
# the executor's actor swapped for a timed one). `scale` and `startup` reach Ray through these.
RAY_IMPORTERS = {"cluster/small_files.py", "cluster/big_file.py", "cluster/timeline.py", "cluster/job_vs_embedder.py"}


def test_the_bench_package_imports_ray_only_in_its_cluster_group(tmp_path):
    # The checker sees imports inside functions, where a lazy `import ray` would hide.
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import ray.data\n    from ray import tune\n")
    assert _imported_modules(probe) == {"ray.data", "ray"}
    bench = REPO / "e5ray" / "bench"
    files = sorted(bench.rglob("*.py"))
    assert len(files) >= 10  # the package is where this test looks for it
    imports = {path.relative_to(bench).as_posix(): _imported_modules(path) for path in files}
    importers = {name for name, found in imports.items() if any(m == "ray" or m.startswith("ray.") for m in found)}
    assert importers == RAY_IMPORTERS, "e5ray/bench reaches Ray only through run_job, but for e5ray.bench.cluster"
    # Nor does Ray come in through the cluster group: nothing outside it imports it (the
    # dispatcher names `e5ray.bench.cluster.scale` as a string, imported when `scale` runs).
    leaks = {
        f"{name}: {module}"
        for name, found in imports.items()
        if not name.startswith("cluster/")
        for module in found
        if module.startswith("e5ray.bench.cluster")
    }
    assert not leaks, sorted(leaks)
