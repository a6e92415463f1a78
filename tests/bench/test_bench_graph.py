"""The benchmark's graph choice (--graph export|nodes) and the fusion it reports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from e5ray.bench.fusion_counts import fusion_counts
from e5ray.testing.export import write_export_model
from e5ray.testing.shapes import SHAPES

ROOT = Path(__file__).resolve().parents[2]
LAYERS = SHAPES["tiny"].layers


def load_job_module():
    spec = importlib.util.spec_from_file_location("benchmark_job_graph", ROOT / "jobs" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, *extra: str) -> dict:
    job = load_job_module()
    out = tmp_path / "result.json"
    args = job.parse_args(
        ["--docs", "16", "--skip-fastembed", "--skip-job", "--workdir", str(tmp_path / "work"), "--out", str(out)]
        + list(extra)
    )
    assert job.main(args) == 0
    return json.loads(out.read_text())


def test_the_benchmark_runs_the_export_graph_by_default_and_reports_attention_fused(tmp_path, capsys):
    result = _run(tmp_path, "--shape", "tiny")
    assert result["model"]["graph"] == "export"
    assert result["fusion"]["copy"] == "fused" and result["fusion"]["attention"] == LAYERS
    assert result["fusion"]["softmax_after"] == 0
    assert "attention fusion (fused copy): " in capsys.readouterr().out


def test_the_node_graph_is_still_there_and_reports_nothing_fused(tmp_path):
    result = _run(tmp_path, "--shape", "tiny", "--graph", "nodes")
    assert result["model"]["graph"] == "nodes"
    assert result["fusion"]["attention"] == 0 and result["fusion"]["softmax_after"] == LAYERS


def test_a_given_export_directory_is_fused_like_the_random_one(tmp_path):
    export = write_export_model(tmp_path / "my-export", arch="xlmr", shape="tiny", seed=9)
    result = _run(tmp_path, "--model-path", str(export))
    assert result["model"]["source"] == "model_path" and result["model"]["arch"] == "xlmr"
    assert result["fusion"]["attention"] == LAYERS


def test_fusion_counts_show_attention_fusing_on_the_export_graph_only():
    export = fusion_counts("tiny", graph="export", use_gpu=True)
    nodes = fusion_counts("tiny", graph="nodes", use_gpu=False)
    assert export["attention"] == LAYERS and export["softmax_after"] == 0
    assert nodes["attention"] == 0 and nodes["softmax_after"] == LAYERS
    with pytest.raises(ValueError, match="unknown shape 'e5-huge'"):
        fusion_counts("e5-huge")


def test_fusion_speed_times_the_three_layouts_of_the_same_weights_and_their_vectors_agree():
    from e5ray.bench.fusion_counts import fusion_speed

    result = fusion_speed("tiny", docs=20, rounds=1)
    assert set(result["tokens_per_s"]) == {"export fused", "export unfused", "nodes"}
    assert all(v["best"] > 0 for v in result["tokens_per_s"].values()) and result["fused_vs_unfused"] > 0
    assert result["min_cosine_fused_vs_nodes"] >= 0.99999
