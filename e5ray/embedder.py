"""E5Embedder: texts in, paper-faithful E5 vectors out.

Pipeline per call: add the E5 prefix, tokenise once (truncating at `max_length`, and
counting what was cut), order by length and cut token-budget batches, run the ONNX
encoder, mean-pool over the attention mask and L2-normalise in numpy, restore the
input order. Each step is a plain function or method so that tests can check it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from e5ray.batching import plan_batches
from e5ray.catalog import DEFAULT_MODEL
from e5ray.pooling import POOLED_OUTPUT, e5_pool
from e5ray.resolve import ModelFiles, model_sha256, resolve_model
from e5ray.space import EmbeddingSpace

Prefix = Literal["passage", "query", "none"]
PREFIXES: dict[str, str] = {"passage": "passage: ", "query": "query: ", "none": ""}
DEVICES = ("cpu", "gpu")
PRECISIONS = ("fp32", "fp16", "int8")

# Padded tokens per batch. CPU: small, so activations stay in cache and padding stays
# near 3% (`jobs/benchmark.py --sweep`, e5-small shape, 2 threads: budget 512 ran 4,837
# tokens/s, 1024 4,622, 2048 4,052, 8192 2,985); GPU: large, to fill the device.
DEFAULT_TOKEN_BUDGET = {"cpu": 512, "gpu": 65536}
DEFAULT_MAX_ROWS = {"cpu": 128, "gpu": 1024}


def prefix_text(prefix: Prefix | str) -> str:
    """The string E5 expects before each text for `prefix` ('passage', 'query' or 'none')."""
    try:
        return PREFIXES[prefix]
    except KeyError:
        raise ValueError(f"unknown prefix {prefix!r}; valid: {', '.join(PREFIXES)}") from None


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class Tokenized:
    """Token ids of a list of texts, in input order, ready to be batched."""

    ids: list[list[int]]
    lengths: np.ndarray
    truncated: np.ndarray  # bool per text: cut at max_length

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class EmbedResult:
    """Vectors in input order plus what it cost to make them."""

    vectors: np.ndarray
    truncated: np.ndarray
    tokens: int = 0
    padded_tokens: int = 0
    seconds: float = 0.0
    batches: int = 0


class E5Embedder:
    """An E5 model loaded once, embedding texts as the E5 paper does.

    `threads` is the exact number of CPU threads the ONNX session may use (default: the
    CPUs this process may run on); set it when several embedders share a node.
    `device="gpu"` needs onnxruntime-gpu with CUDA; there is no silent CPU fallback.
    `fuse_attention` (fp32): load a copy with attention fused by onnxruntime's transformer
    optimiser when that fuses anything (e5ray.fusion); fp16 copies are always fused.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        model_path: str | os.PathLike[str] | None = None,
        device: Literal["cpu", "gpu"] = "cpu",
        threads: int | None = None,
        max_length: int = 512,
        token_budget: int | None = None,
        max_batch_rows: int | None = None,
        precision: Literal["fp32", "fp16", "int8"] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        storage_options: dict | None = None,
        gpu_id: int = 0,
        int8_min_cosine: float = 0.99,
        fuse_attention: bool = True,
    ) -> None:
        if device not in DEVICES:
            raise ValueError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
        precision = precision or ("fp16" if device == "gpu" else "fp32")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        if precision == "fp16" and device != "gpu":
            raise ValueError("precision 'fp16' needs device='gpu' (CPU kernels for fp16 are slower than fp32)")
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (room for the special tokens), got {max_length}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")

        self.model = model
        self.device = device
        self.precision = precision
        self.threads = threads or available_cpus()
        self.token_budget = token_budget or DEFAULT_TOKEN_BUDGET[device]
        self.max_batch_rows = max_batch_rows or DEFAULT_MAX_ROWS[device]
        self.files: ModelFiles = resolve_model(model, model_path, cache_dir, storage_options)

        self.space = space_of(model, self.files, max_length, precision)
        self.max_length = self.space.max_length
        self.dim = self.space.dim
        config = json.loads(self.files.config_path.read_text())
        self.pad_id = int(config.get("pad_token_id", 0) or 0)
        self.tokenizer = Tokenizer.from_file(str(self.files.tokenizer_path))
        self.tokenizer.no_padding()  # we pad per batch, to the batch's own longest row
        self.tokenizer.enable_truncation(self.max_length)

        if device == "gpu":
            require_cuda()  # before converting anything: fail fast on a CPU-only install
        # Quantised and half-precision copies are separate files with their own hashes.
        from e5ray.precision import prepare_model_file

        self.onnx_path = prepare_model_file(self.files.onnx_path, precision, cache_dir, fuse=fuse_attention)
        self.session = self._make_session(gpu_id)
        self.input_names = {i.name for i in self.session.get_inputs()}
        for required in ("input_ids", "attention_mask"):
            if required not in self.input_names:
                raise ValueError(f"{self.onnx_path}: ONNX inputs {sorted(self.input_names)} lack {required!r}")
        self.output_name = self._token_output_name()
        declared = self.session.get_outputs()[0].shape[-1]
        if isinstance(declared, int) and declared != self.dim:
            raise ValueError(f"{self.onnx_path}: output width {declared} != config.json hidden_size {self.dim}")
        if precision == "int8":
            from e5ray.precision import check_int8_quality

            check_int8_quality(self, int8_min_cosine)

    # -- setup -----------------------------------------------------------------

    def _make_session(self, gpu_id: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.device == "cpu":
            return ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        session = ort.InferenceSession(
            str(self.onnx_path),
            options,
            providers=[("CUDAExecutionProvider", {"device_id": gpu_id}), "CPUExecutionProvider"],
        )
        # onnxruntime falls back to CPU with only a warning when CUDA libraries fail to load.
        if session.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(
                f"CUDA execution provider failed to initialise (session providers: {session.get_providers()}); "
                "check that the CUDA and cuDNN libraries matching onnxruntime-gpu are installed"
            )
        return session

    def _token_output_name(self) -> str:
        outputs = self.session.get_outputs()
        by_name = {o.name: o for o in outputs}
        if POOLED_OUTPUT in by_name:  # our own pooling head (GPU models): already E5-pooled
            return POOLED_OUTPUT
        if "last_hidden_state" in by_name:
            return "last_hidden_state"
        token_level = [o.name for o in outputs if len(o.shape) == 3]
        if not token_level:
            raise ValueError(
                f"{self.onnx_path}: no token-level output (rank 3) among {[(o.name, o.shape) for o in outputs]}; "
                "e5ray pools itself and needs the encoder's last hidden state"
            )
        return token_level[0]

    # -- embedding ---------------------------------------------------------------

    def tokenize(self, texts: Sequence[str], prefix: Prefix | str = "passage") -> Tokenized:
        """Prefix and tokenise `texts`, truncating at max_length and recording which were cut."""
        head = prefix_text(prefix)
        encodings = self.tokenizer.encode_batch([head + t for t in texts], add_special_tokens=True)
        ids = [e.ids for e in encodings]
        return Tokenized(
            ids=ids,
            lengths=np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids)),
            truncated=np.fromiter((len(e.overflowing) > 0 for e in encodings), dtype=bool, count=len(ids)),
        )

    def run(self, tokens: Tokenized) -> EmbedResult:
        """Embed tokenised texts: length-sorted token-budget batches, ONNX, pool, input order."""
        start = time.perf_counter()
        out = np.empty((len(tokens), self.dim), dtype=np.float32)
        batches = plan_batches(tokens.lengths, self.token_budget, self.max_batch_rows)
        padded = 0
        for batch in batches:
            input_ids = np.full((len(batch.indices), batch.seq_len), self.pad_id, dtype=np.int64)
            for row, i in enumerate(batch.indices):
                seq = tokens.ids[i]
                input_ids[row, : len(seq)] = seq
            mask = (np.arange(batch.seq_len)[None, :] < tokens.lengths[batch.indices][:, None]).astype(np.int64)
            output = self._forward(input_ids, mask)
            out[batch.indices] = output if self.output_name == POOLED_OUTPUT else e5_pool(output, mask)
            padded += batch.padded_tokens
        return EmbedResult(
            vectors=out,
            truncated=tokens.truncated,
            tokens=int(tokens.lengths.sum()),
            padded_tokens=padded,
            seconds=time.perf_counter() - start,
            batches=len(batches),
        )

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        return self.session.run([self.output_name], feed)[0]

    def embed(self, texts: Sequence[str], prefix: Prefix | str = "passage") -> EmbedResult:
        """Vectors (n, dim) float32 for `texts` with statistics; see embed_passages for arrays only."""
        texts = _check_texts(texts)
        return self.run(self.tokenize(texts, prefix))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """E5 vectors of documents (prefix 'passage: '), shape (n, dim), float32, unit norm."""
        return self.embed(texts, "passage").vectors

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """E5 vectors of search queries (prefix 'query: ')."""
        return self.embed(texts, "query").vectors

    def embed_raw(self, texts: Sequence[str]) -> np.ndarray:
        """E5 vectors with no prefix, for texts that already carry one."""
        return self.embed(texts, "none").vectors


def require_cuda() -> None:
    """Raise, saying what is missing, unless onnxruntime offers the CUDA execution provider."""
    if hasattr(ort, "preload_dlls"):
        # Load CUDA and cuDNN from the nvidia-* wheels when they are installed (as with
        # PyTorch); system-wide CUDA libraries are found without this.
        try:
            ort.preload_dlls()
        except Exception:  # absent wheels are fine: session creation reports what is missing
            pass
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise RuntimeError(
            "device='gpu' needs onnxruntime with the CUDA execution provider; this "
            f"onnxruntime ({ort.__version__}) offers {available}. Install the GPU wheel in an "
            "environment without the CPU one: pip uninstall -y onnxruntime && pip install 'e5ray[gpu]'"
        )


def effective_max_length(files: ModelFiles, requested: int) -> int:
    """`requested`, capped by what the model's position table and tokenizer allow."""
    config = json.loads(files.config_path.read_text())
    limit = requested
    positions = config.get("max_position_embeddings")
    if positions:
        # RoBERTa/XLM-R offset positions by pad_id + 1 (514 rows hold 512 tokens).
        pad_id = int(config.get("pad_token_id", 1) or 0)
        offset = pad_id + 1 if config.get("model_type") in ("xlm-roberta", "roberta") else 0
        limit = min(limit, int(positions) - offset)
    if files.tokenizer_config_path is not None:
        tk_max = json.loads(files.tokenizer_config_path.read_text()).get("model_max_length")
        if isinstance(tk_max, int) and 0 < tk_max < 1_000_000:  # HF stores 1e30 for "unset"
            limit = min(limit, tk_max)
    return limit


def describe_space(
    model: str = DEFAULT_MODEL,
    model_path: str | os.PathLike[str] | None = None,
    max_length: int = 512,
    precision: str = "fp32",
    prefix: str = "passage",
    cache_dir: str | os.PathLike[str] | None = None,
    storage_options: dict | None = None,
) -> EmbeddingSpace:
    """The space an E5Embedder with these settings embeds into, without loading the model."""
    prefix_text(prefix)  # validates
    return space_of(model, resolve_model(model, model_path, cache_dir, storage_options), max_length, precision, prefix)


def space_of(model: str, files: ModelFiles, max_length: int, precision: str, prefix: str = "passage") -> EmbeddingSpace:
    """The embedding space of `files` used with these settings (read from the files, not the session)."""
    config = json.loads(files.config_path.read_text())
    return EmbeddingSpace(
        model=model,
        model_sha256=model_sha256(files),
        dim=int(config["hidden_size"]),
        max_length=effective_max_length(files, max_length),
        precision=precision,
        prefix=prefix,
    )


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got a single str; wrap it in a list")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text at position {i} is {type(text).__name__} ({text!r:.60}), not str")
    return texts
