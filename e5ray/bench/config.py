"""What one benchmark run is asked to do (`BenchConfig`) and the constants every stage shares.

A "real token" means the same for every contestant: the tokenised length of
"passage: " + text with special tokens, truncated at `MAX_LENGTH`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from e5ray.testing.archs import ARCHS, Arch

PREFIX = "passage: "
MAX_LENGTH = 512
FASTEMBED_BATCH = 256  # TextEmbedding.embed's default batch_size
WARMUP_DOCS = 16  # every contestant embeds these once before its timed run
DEFAULT_ARCH = {"tiny": "bert", "e5-small": "bert", "e5-base": "xlmr", "e5-large": "xlmr"}
SWEEP_BUDGETS = (512, 1024, 2048, 4096, 8192)
SWEEP_ROWS = (32, 64, 128, 256)


@dataclass
class BenchConfig:
    """One benchmark run; the defaults are those of the runs quoted in BENCHMARKS.md."""

    shape: str = "e5-small"
    arch: str | None = None  # default: that of the real model of this shape
    # A real exported model directory: its tokenizer and ONNX file replace the synthetic
    # model (shape and arch then come from its config.json); the corpus stays synthetic.
    model_path: str | None = None
    # Layout of the random-weight graph: "export" (as torch.onnx writes BERT/XLM-R, so
    # attention fuses as in real exports) or "nodes" (the node-by-node graph of the first
    # BENCHMARKS.md tables); see e5ray.testing.export.
    graph: str = "export"
    docs: int = 600
    fastembed_docs: int | None = None  # default: all docs (compare tokens/s, never totals)
    threads: int | None = None  # None: every CPU this process may use, for every contestant
    precision: str = "fp32"  # fp32 or int8 (CPU); the GPU path uses fp16
    device: str = "cpu"
    rss_scale: int = 10  # also run the job on rss_scale x docs; <= 1 skips it
    shard_rows: int = 2048  # = JobConfig.chunk_rows: a shard is one sorted chunk, as in a real corpus
    sweep: bool = False
    sweep_docs: int = 400
    sweep_budgets: tuple[int, ...] = SWEEP_BUDGETS
    sweep_rows: tuple[int, ...] = SWEEP_ROWS
    sweep_reps: int = 2
    skip_fastembed: bool = False
    skip_job: bool = False
    skip_embedder: bool = False
    seed: int = 0
    workdir: str | None = None
    gpu_sample: int = 1000
    gpu_fastembed_docs: int = 2000
    int8_min_cosine: float = -1.0  # the benchmark reports agreement; it does not gate on it

    def resolved_arch(self) -> Arch:
        arch = self.arch or DEFAULT_ARCH.get(self.shape, "xlmr")
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
        return cast(Arch, arch)
