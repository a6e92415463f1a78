"""E5Embedder: texts in, paper-faithful E5 vectors out.

Pipeline per call: add the E5 prefix (replacing one the text already carries),
tokenise once (truncating at `max_length` and counting what was cut, or cutting long
texts into windows: e5ray.model.windows), order by length and cut token-budget batches, run
the ONNX encoder, mean-pool over the attention mask and L2-normalise in numpy, restore
the input order. Each step is a plain function or method so that tests can check it.
Pooling (mean, or legacy cls), normalisation and the long-text mode are part of the
embedder's `space`. The ONNX session is made and checked in e5ray.model.session; the
data passed between the steps (`Tokenized`, `EmbedResult`) lives in e5ray.model.embed_io.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from e5ray.errors import UsageError
from e5ray.model.batching import plan_batches
from e5ray.model.catalog import DEFAULT_MODEL
from e5ray.model.describe import describe_space, space_of
from e5ray.model.devices import available_cpus, require_cuda
from e5ray.model.embed_io import EmbedResult, Tokenized
from e5ray.model.options import DEVICES, PRECISIONS
from e5ray.model.pooling import POOLED_OUTPUT, POOLINGS, check_pooling
from e5ray.model.precision import GATE_SAMPLE, check_int8_quality, prepare_model_file
from e5ray.model.prefixes import strip_e5_prefixes
from e5ray.model.resolve import ModelFiles, read_json_file, resolve_model
from e5ray.model.session import check_output_width, input_names, make_session, token_output_name
from e5ray.model.space import PREFIXES, Prefix, prefix_text
from e5ray.model.windows import WindowTokenizer, average_windows, check_long_text, default_stride

__all__ = [
    "DEVICES",
    "PRECISIONS",
    "PREFIXES",
    "E5Embedder",
    "EmbedResult",
    "Prefix",
    "Tokenized",
    "available_cpus",
    "describe_space",
    "prefix_text",
    "require_cuda",
]
log = logging.getLogger("e5ray")

# Padded tokens per batch. CPU: small, so activations stay in cache and padding stays
# near 3% (`jobs/benchmark.py --sweep`, e5-small shape, 2 threads: budget 512 ran 4,837
# tokens/s, 1024 4,622, 2048 4,052, 8192 2,985); GPU: large, to fill the device
# (`python -m e5ray.bench gpu-bench`, H200, e5-large fp16, batches alone: 65,536 x 1,024 rows ran 499,792
# tokens/s, 131,072 x 512 583,473, 262,144 x 512 588,568; the smaller of the last two halves
# the activations' memory for 1% of speed).
DEFAULT_TOKEN_BUDGET = {"cpu": 512, "gpu": 131072}
DEFAULT_MAX_ROWS = {"cpu": 128, "gpu": 512}


class E5Embedder:
    """An E5 model loaded once, embedding texts as the E5 paper does.

    `threads` is the exact number of CPU threads the ONNX session may use (default: the
    CPUs this process may run on); set it when several embedders share a node.
    `device="gpu"` needs onnxruntime-gpu with CUDA; there is no silent CPU fallback.
    `fuse_attention` (fp32): load a copy with attention fused by onnxruntime's transformer
    optimiser when that fuses anything (e5ray.model.fusion); fp16 copies are always fused.
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
        storage_options: dict[str, Any] | None = None,
        gpu_id: int = 0,
        int8_min_cosine: float = 0.99,
        pooling: str = "mean",
        long_text: str = "truncate",
        stride: int | None = None,
        fuse_attention: bool = True,
    ) -> None:
        self.precision: str = _checked_options(device, precision, max_length, threads)
        self.pooling = check_pooling(pooling)
        self.long_text = check_long_text(long_text)
        if pooling == "cls":
            log.warning(
                "pooling 'cls' is not the E5 paper's pooling (mean over tokens) and gives other vectors; "
                "use it only to extend an index built that way while a move to mean pooling is prepared"
            )

        self.model = model
        self.device = device
        self.threads = threads or available_cpus()
        self.token_budget = token_budget or DEFAULT_TOKEN_BUDGET[device]
        self.max_batch_rows = max_batch_rows or DEFAULT_MAX_ROWS[device]
        self.files: ModelFiles = resolve_model(model, model_path, cache_dir, storage_options)
        self._load_space(max_length, pooling, long_text, stride)
        self._load_tokenizer()
        self._load_session(cache_dir, fuse_attention, gpu_id)
        # int8 only: mean cosine of this model's vectors against fp32's on the gate sample.
        self.int8_cosine: float | None = None
        if self.precision == "int8":
            self.int8_cosine = check_int8_quality(self.onnx_path, self._int8_agreement, int8_min_cosine)

    # -- setup -----------------------------------------------------------------

    def _load_space(self, max_length: int, pooling: str, long_text: str, stride: int | None) -> None:
        """The space of the model's files with these settings, and what it fixes: the lengths,
        the width, the pooling and the pad id (config.json is parsed once, for all of them)."""
        config = read_json_file(self.files.config_path)
        self.space = space_of(
            self.model,
            self.files,
            max_length,
            self.precision,
            config=config,
            pooling=pooling,
            long_text=long_text,
            stride=stride,
        )
        self.max_length = self.space.max_length
        self.stride = default_stride(self.max_length) if stride is None else stride
        if not 0 <= self.stride < self.max_length:
            raise UsageError(f"stride must be in 0..{self.max_length - 1} (tokens of overlap), got {self.stride}")
        self.dim = self.space.dim
        self.pool = POOLINGS[self.space.pooling].pool
        self.pad_id = int(config.get("pad_token_id", 0) or 0)

    def _load_tokenizer(self) -> None:
        self.tokenizer = Tokenizer.from_file(str(self.files.tokenizer_path))
        self.tokenizer.no_padding()  # we pad per batch, to the batch's own longest row
        self.tokenizer.enable_truncation(self.max_length)
        self._windows: WindowTokenizer | None = None  # made on first use of chunk/average
        self._warned_prefix = False

    def _load_session(self, cache_dir: str | os.PathLike[str] | None, fuse_attention: bool, gpu_id: int) -> None:
        """The model file for this precision and its checked session (e5ray.model.session)."""
        if self.device == "gpu":
            require_cuda()  # before converting anything: fail fast on a CPU-only install
        # Quantised and half-precision copies are separate files with their own hashes.
        self.onnx_path = prepare_model_file(
            self.files.onnx_path, self.precision, cache_dir, self.pooling, fuse=fuse_attention
        )
        self.session = make_session(self.onnx_path, self.device, self.threads, gpu_id)
        self.input_names = input_names(self.session, self.onnx_path)
        self.output_name = token_output_name(self.session, self.onnx_path, self.pooling)
        check_output_width(self.session, self.onnx_path, self.dim)

    # -- embedding ---------------------------------------------------------------

    def _int8_agreement(self) -> float:
        """Mean cosine between this (int8) model's vectors and the fp32 model's on GATE_SAMPLE;
        the fp32 session is made for this measurement only and dropped after it."""
        tokens = self.tokenize(GATE_SAMPLE, "passage", "truncate")
        reference = ort.InferenceSession(str(self.files.onnx_path), providers=["CPUExecutionProvider"])
        quantized = self.run(tokens).vectors
        fp32 = self.run(tokens, session=reference).vectors
        return float(np.mean(np.sum(quantized * fp32, axis=1)))

    def tokenize(self, texts: Sequence[str], prefix: Prefix = "passage", long_text: str | None = None) -> Tokenized:
        """Prefix and tokenise `texts`: truncated at max_length (recording which were cut), or
        cut into windows (`long_text` 'chunk' or 'average'; default: the embedder's mode)."""
        head = prefix_text(prefix)
        mode = check_long_text(long_text or self.long_text)
        bodies, cut = strip_e5_prefixes(texts) if head else (list(texts), [0] * len(texts))
        if any(cut) and not self._warned_prefix:
            self._warned_prefix = True  # once per embedder: a corpus may hold millions of them
            log.warning(
                "some texts already start with 'query: ' or 'passage: ' (e.g. %.60r); that prefix is removed "
                "and %r added, so no text carries two",
                texts[next(i for i, c in enumerate(cut) if c)],
                head,
            )
        if mode == "truncate":
            encodings = self.tokenizer.encode_batch([head + t for t in bodies], add_special_tokens=True)
            ids = [e.ids for e in encodings]
            truncated = np.fromiter((len(e.overflowing) > 0 for e in encodings), dtype=bool, count=len(ids))
            windows = None
        else:
            if self._windows is None:
                self._windows = WindowTokenizer(self.tokenizer, self.max_length, self.stride)
            ids, windows = self._windows.split(texts, bodies, cut, head)
            truncated = np.zeros(len(ids), dtype=bool)  # windows cover the whole text
        return Tokenized(
            ids=ids,
            lengths=np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids)),
            truncated=truncated,
            long_text=mode,
            windows=windows,
        )

    def run(self, tokens: Tokenized, session: ort.InferenceSession | None = None) -> EmbedResult:
        """Embed tokenised texts: length-sorted token-budget batches, ONNX, pool, input order.
        `session`: another session of the same graph (the int8 gate's fp32 reference)."""
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
            output = self._forward(input_ids, mask, session)
            out[batch.indices] = output if self.output_name == POOLED_OUTPUT else self.pool(output, mask)
            padded += batch.padded_tokens
        truncated = tokens.truncated
        if tokens.long_text == "average" and tokens.windows is not None:
            out = average_windows(out, tokens.windows)
            truncated = np.zeros(tokens.windows.documents, dtype=bool)
        return EmbedResult(
            vectors=out,
            truncated=truncated,
            windows=tokens.windows,
            tokens=int(tokens.lengths.sum()),
            padded_tokens=padded,
            seconds=time.perf_counter() - start,
            batches=len(batches),
        )

    def _forward(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, session: ort.InferenceSession | None = None
    ) -> np.ndarray:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        result: np.ndarray = (session or self.session).run([self.output_name], feed)[0]
        return result

    def embed(self, texts: Sequence[str], prefix: Prefix = "passage", long_text: str | None = None) -> EmbedResult:
        """Vectors (n, dim) float32 for `texts` with statistics; see embed_passages for arrays only.

        `long_text` (default: the embedder's mode): 'truncate' or 'average' give one row per
        text; 'chunk' one row per window, `result.windows` naming its text and span."""
        texts = _check_texts(texts)
        return self.run(self.tokenize(texts, prefix, long_text))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """E5 vectors of documents (prefix 'passage: '), shape (n, dim), float32, unit norm."""
        return self.embed(texts, "passage").vectors

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """E5 vectors of search queries (prefix 'query: ')."""
        return self.embed(texts, "query").vectors

    def embed_raw(self, texts: Sequence[str]) -> np.ndarray:
        """E5 vectors with no prefix, for texts that already carry one."""
        return self.embed(texts, "none").vectors


def _checked_options(device: str, precision: str | None, max_length: int, threads: int | None) -> str:
    """The precision to use (fp16 on a GPU, fp32 on a CPU, unless given); raises on an
    option out of range, before anything is loaded."""
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    precision = precision or ("fp16" if device == "gpu" else "fp32")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device != "gpu":
        raise UsageError("precision 'fp16' needs device='gpu' (CPU kernels for fp16 are slower than fp32)")
    if max_length < 2:
        raise UsageError(f"max_length must be >= 2 (room for the special tokens), got {max_length}")
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be >= 1, got {threads}")
    return precision


def _check_texts(texts: Sequence[str]) -> list[str]:  # a caller's bug, so TypeError, not UsageError
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got a single str; wrap it in a list")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text at position {i} is {type(text).__name__} ({text!r:.60}), not str")
    return texts
