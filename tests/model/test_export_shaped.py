"""Export-shaped encoders (e5ray.testing.export) and attention fusion (e5ray.model.fusion)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from e5ray import E5Embedder
from e5ray.model.fusion import optimize_encoder, read_report
from e5ray.model.precision import convert_fp16, prepare_model_file
from e5ray.testing.export import export_graph, write_export_model, write_model
from e5ray.testing.models import write_test_model
from e5ray.testing.reference import load_reference
from e5ray.testing.shapes import SHAPES, EncoderShape
from e5ray.testing.words import sample_words

TEXTS = [
    "short",
    "a rather longer text with several more words in it, to pad the others",
    "Die Brücke über den Fluss ist alt",
    "東京の天気は明日から雨になる予報です",
    " ".join(sample_words()[:120]),
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Per arch: the export-shaped and the node-by-node model with the same seed."""
    out: dict[str, dict[str, Path]] = {}
    for arch in ("bert", "xlmr"):
        root = tmp_path_factory.mktemp(f"pair-{arch}")
        out[arch] = {
            "export": write_export_model(root / "export", arch=arch, seed=7),
            "nodes": write_test_model(root / "nodes", arch=arch, seed=7),
        }
    return out


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_export_shaped_and_node_by_node_models_with_the_same_weights_give_the_same_vectors(arch, pair):
    export = E5Embedder("tiny", model_path=pair[arch]["export"], threads=1, fuse_attention=False)
    nodes = E5Embedder("tiny", model_path=pair[arch]["nodes"], threads=1, fuse_attention=False)
    a, b = export.embed_passages(TEXTS), nodes.embed_passages(TEXTS)
    assert _cosines(a, b).min() >= 0.99999
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_the_export_shaped_graph_computes_the_reference_encoder(arch, pair):
    """Held to the independent numpy forward pass, padded rows included (XLM-R positions)."""
    import onnxruntime as ort

    model_dir = pair[arch]["export"]
    reference = load_reference(model_dir)
    rng = np.random.default_rng(3)
    pad = 0 if arch == "bert" else 1
    ids = rng.integers(5, 200, size=(3, 13))
    mask = np.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = pad
    feed = {"input_ids": ids, "attention_mask": mask}
    if arch == "bert":
        feed["token_type_ids"] = np.zeros_like(ids)
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    (hidden,) = session.run(["last_hidden_state"], feed)
    expected = reference.last_hidden_state(ids, mask)
    real = mask.astype(bool)
    np.testing.assert_allclose(hidden[real], expected[real], atol=1e-5)


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
@pytest.mark.parametrize("use_gpu", [False, True])
def test_attention_fuses_on_the_export_shaped_graph_and_not_on_the_node_graph(arch, use_gpu, pair):
    layers = SHAPES["tiny"].layers
    _, export = optimize_encoder(pair[arch]["export"] / "model.onnx", use_gpu=use_gpu)
    _, nodes = optimize_encoder(pair[arch]["nodes"] / "model.onnx", use_gpu=use_gpu)
    assert export.softmax_before == layers and export.softmax_after == 0
    assert export.attention == layers and export.fused
    assert export.ops_after.get("SkipLayerNormalization", 0) == 2 * layers
    assert export.nodes_after < export.nodes_before / 3
    # The node-by-node graph is what the old benchmarks ran: attention stays unfused.
    assert nodes.softmax_after == layers and nodes.attention == 0 and not nodes.fused


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_the_fused_copy_is_made_once_agrees_with_the_unfused_model_and_keeps_the_space(arch, pair, tmp_path):
    # A private copy of the model: the fused file is written beside it.
    model_dir = write_export_model(tmp_path / "m", arch=arch, seed=7)
    fused = E5Embedder("tiny", model_path=model_dir, threads=1)
    plain = E5Embedder("tiny", model_path=model_dir, threads=1, fuse_attention=False)
    assert fused.onnx_path.name == "model.fused.onnx" and plain.onnx_path.name == "model.onnx"
    ops = {n.op_type for n in onnx.load(str(fused.onnx_path)).graph.node}
    assert "Attention" in ops and "Softmax" not in ops
    assert fused.space == plain.space  # same function, same embedding space
    a, b = fused.embed_passages(TEXTS), plain.embed_passages(TEXTS)
    assert _cosines(a, b).min() >= 0.99999
    np.testing.assert_allclose(a, b, atol=1e-5)
    stamp = fused.onnx_path.stat().st_mtime_ns
    assert prepare_model_file(model_dir / "model.onnx", "fp32").stat().st_mtime_ns == stamp  # reused


def test_a_graph_where_nothing_fuses_loads_the_source_and_remembers_why(tmp_path):
    model_dir = write_test_model(tmp_path / "nodes", arch="bert", seed=1)
    embedder = E5Embedder("tiny", model_path=model_dir, threads=1)
    assert embedder.onnx_path == model_dir / "model.onnx"
    assert not (model_dir / "model.fused.onnx").exists()  # no useless copy
    report = read_report(model_dir / "model.fused.onnx")
    assert report is not None and not report.fused and report.softmax_after == SHAPES["tiny"].layers


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_the_fp16_gpu_copy_of_the_export_graph_has_fused_attention(arch, pair, tmp_path):
    target = tmp_path / "model.fp16.onnx"
    report = convert_fp16(pair[arch]["export"] / "model.onnx", target)
    assert report.fused and report.softmax_after == 0
    ops = [n.op_type for n in onnx.load(str(target)).graph.node]
    assert ops.count("Attention") == SHAPES["tiny"].layers and "Softmax" not in ops


def test_external_data_export_gives_the_same_outputs_and_fuses(tmp_path):
    import onnxruntime as ort

    inline = write_export_model(tmp_path / "inline", arch="xlmr", seed=4, external_data=False)
    split = write_export_model(tmp_path / "split", arch="xlmr", seed=4, external_data=True)
    assert (split / "model.onnx_data").is_file() and not (inline / "model.onnx_data").exists()
    ids = np.array([[0, 10, 11, 12, 2], [0, 13, 2, 1, 1]])
    mask = (ids != 1).astype(np.int64)
    outs = [
        ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"]).run(
            None, {"input_ids": ids, "attention_mask": mask}
        )[0]
        for d in (inline, split)
    ]
    np.testing.assert_array_equal(outs[0], outs[1])
    _, report = optimize_encoder(split / "model.onnx")
    assert report.fused


def test_write_model_chooses_the_graph_and_names_the_valid_ones(tmp_path):
    write_model(tmp_path / "e", graph="export", arch="bert")
    write_model(tmp_path / "n", graph="nodes", arch="bert")
    assert onnx.load(str(tmp_path / "e" / "model.onnx")).producer_name == "pytorch"
    assert onnx.load(str(tmp_path / "n" / "model.onnx")).producer_name == "e5ray.testing"
    with pytest.raises(ValueError, match="valid: export, nodes"):
        write_model(tmp_path / "x", graph="torch")


# ---------------------------------------------------------------------------------------
# Against a live torch export (needs the bench extra: torch and transformers 4.x)


def _torch_export(arch: str, shape: EncoderShape, path: Path) -> onnx.ModelProto:
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'e5ray[bench]')")
    transformers = pytest.importorskip(
        "transformers", reason="transformers is not installed (pip install 'e5ray[bench]')"
    )
    major = int(transformers.__version__.split(".")[0])
    if major >= 5:
        pytest.skip(
            f"transformers {transformers.__version__} exports attention through its attention interface; the "
            "published E5 exports were made with transformers 4.x eager attention (pip install 'transformers<4.48')"
        )
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    common = {
        "vocab_size": shape.vocab_size,
        "hidden_size": shape.hidden,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "intermediate_size": shape.intermediate,
        "attn_implementation": "eager",
    }
    if arch == "bert":
        model = BertModel(BertConfig(max_position_embeddings=shape.max_positions, **common), add_pooling_layer=False)
        names = ["input_ids", "attention_mask", "token_type_ids"]
    else:
        config = XLMRobertaConfig(
            max_position_embeddings=shape.max_positions + 2,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            type_vocab_size=1,
            layer_norm_eps=1e-5,
            **common,
        )
        model = XLMRobertaModel(config, add_pooling_layer=False)
        names = ["input_ids", "attention_mask"]
    model.eval()
    ids = torch.randint(5, shape.vocab_size, (2, 9))
    args = tuple([ids, torch.ones_like(ids), torch.zeros_like(ids)][: len(names)])
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in [*names, "last_hidden_state"]}

    class Hidden(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, inputs, strict=True))).last_hidden_state

    kwargs = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
    torch.onnx.export(
        Hidden(model),
        args,
        str(path),
        input_names=names,
        output_names=["last_hidden_state"],
        dynamic_axes=axes,
        opset_version=14,
        do_constant_folding=True,
        **kwargs,
    )
    return onnx.load(str(path))


def _wiring(graph: onnx.GraphProto) -> list[tuple[str, tuple[str, ...]]]:
    """Each node as (op type, where each input comes from: node index, graph input or weight).

    Identity nodes are dropped: torch emits them only to share initializers that happen to
    be equal (fresh models have all-zero biases), and they are resolved through.
    """
    inputs = {i.name for i in graph.input}
    alias: dict[str, str] = {}
    producer: dict[str, int] = {}
    out: list[tuple[str, tuple[str, ...]]] = []
    for node in graph.node:
        if node.op_type == "Identity":
            alias[node.output[0]] = node.input[0]
            continue
        sources = []
        for name in node.input:
            name = alias.get(name, name)
            if name in producer:
                sources.append(f"node{producer[name]}")
            elif name in inputs:
                sources.append(name)
            else:
                sources.append("weight")
        producer[node.output[0]] = len(out)
        out.append((node.op_type, tuple(sources)))
    return out


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_the_export_shaped_graph_is_wired_node_for_node_like_a_torch_export(arch):
    shape = EncoderShape(layers=2, hidden=32, heads=4, intermediate=64, vocab_size=300, max_positions=64)
    with tempfile.TemporaryDirectory() as tmp:
        real = _torch_export(arch, shape, Path(tmp) / "torch.onnx")
    ours = export_graph(arch, shape)
    assert [op for op, _ in _wiring(ours)] == [op for op, _ in _wiring(real.graph)]
    assert _wiring(ours) == _wiring(real.graph)
    assert [i.name for i in ours.input] == [i.name for i in real.graph.input]
    assert real.opset_import[0].version == 14 and real.producer_name == "pytorch"


def test_optimising_a_model_of_another_producer_logs_no_model_type_advice(tmp_path, caplog):
    write_test_model(tmp_path / "nodes", seed=3)  # producer "e5ray.testing", not "pytorch"
    with caplog.at_level("WARNING"):
        optimize_encoder(tmp_path / "nodes" / "model.onnx")
    assert not [r for r in caplog.records if "producer not matched" in r.getMessage()]
