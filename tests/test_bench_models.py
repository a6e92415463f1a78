"""Which model the benchmark runs: random-weight graph choice and a real export via --model-path."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from e5ray.bench_models import fusion_counts, place_model, shape_key_for, shape_of_config
from e5ray.testing_export import write_export_model
from e5ray.testmodels import SHAPES

ROOT = Path(__file__).resolve().parents[1]


def load_job_module():
    spec = importlib.util.spec_from_file_location("benchmark_job", ROOT / "jobs" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shape_of_an_xlmr_config_nets_out_the_position_offset(tmp_path):
    model = write_export_model(tmp_path / "m", arch="xlmr", shape="tiny")
    shape = shape_of_config(json.loads((model / "config.json").read_text()))
    assert shape == SHAPES["tiny"]
    assert shape_key_for(shape) == "tiny"
    with pytest.raises(ValueError, match="lacks 'hidden_size'"):
        shape_of_config({"model_type": "bert", "num_hidden_layers": 2})


def test_a_workdir_refuses_a_model_of_another_graph(tmp_path):
    assert place_model(tmp_path, shape="tiny", arch=None, graph="export") == ("tiny", "bert")
    assert place_model(tmp_path, shape="tiny", arch=None, graph="export") == ("tiny", "bert")  # reused
    with pytest.raises(ValueError, match=r"already holds a model \(export\), not nodes"):
        place_model(tmp_path, shape="tiny", arch=None, graph="nodes")


def test_the_benchmark_runs_a_given_export_directory_and_reports_its_fusion(tmp_path, capsys):
    export = write_export_model(tmp_path / "my-export", arch="xlmr", shape="tiny", seed=9)
    job = load_job_module()
    out = tmp_path / "result.json"
    args = job.parse_args(
        [
            "--model-path",
            str(export),
            "--docs",
            "16",
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
    assert result["model"]["graph"] == "model-path" and result["model"]["model_path"] == str(export)
    assert result["model"]["arch"] == "xlmr" and result["model"]["shape"] == "tiny"
    assert result["fusion"]["attention"] == SHAPES["tiny"].layers and result["fusion"]["softmax_after"] == 0
    assert result["contestants"]["embedder"]["tokens_per_s"] > 0
    assert "attention fusion (fp32 CPU copy): " in capsys.readouterr().out
    # The directory was linked in, not copied or rewritten.
    assert (tmp_path / "work" / "model-xlmr-tiny").resolve() == export.resolve()


def test_the_benchmark_names_a_shape_that_does_not_match_the_export(tmp_path, capsys):
    export = write_export_model(tmp_path / "my-export", arch="bert", shape="tiny")
    job = load_job_module()
    args = job.parse_args(["--model-path", str(export), "--shape", "e5-small", "--workdir", str(tmp_path / "w")])
    assert job.main(args) == 2
    assert "--shape e5-small does not match" in capsys.readouterr().err


def test_fusion_counts_show_attention_fusing_on_the_export_graph_only():
    export = fusion_counts("tiny", graph="export", use_gpu=True)
    nodes = fusion_counts("tiny", graph="nodes", use_gpu=False)
    layers = SHAPES["tiny"].layers
    assert export["attention"] == layers and export["softmax_after"] == 0
    assert nodes["attention"] == 0 and nodes["softmax_after"] == layers
    with pytest.raises(ValueError, match="unknown shape 'e5-huge'"):
        fusion_counts("e5-huge")
