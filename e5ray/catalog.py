"""The E5 model family: what each model is and where a public ONNX export lives.

A `ModelSpec` is pure data. Resolution (finding the files on disk) lives in
`e5ray.resolve`; the embedder never looks at the catalogue's download details.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Arch = Literal["bert", "xlmr"]

DEFAULT_MODEL = "intfloat/multilingual-e5-large"


@dataclass(frozen=True)
class ModelSpec:
    """One E5 model and the public ONNX export e5ray downloads for it.

    `hf_repo`/`model_file`/`additional_files` follow fastembed's model description, so
    the catalogue entry can be registered with fastembed and downloaded by it.
    `verified` says whether the export's file list was checked by the team (see README).
    """

    name: str
    dim: int
    max_tokens: int
    arch: Arch
    hf_repo: str
    model_file: str
    additional_files: tuple[str, ...] = ()
    size_gb: float = 0.0
    multilingual: bool = True
    verified: bool = True


CATALOG: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "intfloat/multilingual-e5-large",
            1024,
            512,
            "xlmr",
            "Qdrant/multilingual-e5-large-onnx",
            "model.onnx",
            ("model.onnx_data",),
            2.24,
        ),
        ModelSpec(
            "intfloat/multilingual-e5-base",
            768,
            512,
            "xlmr",
            "Xenova/multilingual-e5-base",
            "onnx/model.onnx",
            (),
            1.11,
        ),
        ModelSpec(
            "intfloat/multilingual-e5-small",
            384,
            512,
            "bert",
            "Xenova/multilingual-e5-small",
            "onnx/model.onnx",
            (),
            0.47,
        ),
        ModelSpec(
            "intfloat/e5-large-v2",
            1024,
            512,
            "bert",
            "Xenova/e5-large-v2",
            "onnx/model.onnx",
            (),
            1.34,
            multilingual=False,
        ),
        ModelSpec(
            "intfloat/e5-base-v2",
            768,
            512,
            "bert",
            "Xenova/e5-base-v2",
            "onnx/model.onnx",
            (),
            0.44,
            multilingual=False,
        ),
        ModelSpec(
            "intfloat/e5-small-v2",
            384,
            512,
            "bert",
            "Xenova/e5-small-v2",
            "onnx/model.onnx",
            (),
            0.13,
            multilingual=False,
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The catalogue entry for `name` (case-insensitive), or a ValueError listing the choices."""
    for spec in CATALOG.values():
        if spec.name.lower() == name.lower():
            return spec
    raise ValueError(
        f"unknown model {name!r}; known E5 models: {', '.join(sorted(CATALOG))}. "
        "For another model pass --model-path with a local or s3:// model directory."
    )
