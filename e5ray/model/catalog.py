"""The E5 model family: what each model is and where a public ONNX export lives.

A `ModelSpec` is pure data. Resolution (finding the files on disk) lives in
`e5ray.model.resolve`; the embedder never looks at the catalogue's download details.
"""

from __future__ import annotations

from dataclasses import dataclass

from e5ray.errors import UsageError

DEFAULT_MODEL = "intfloat/multilingual-e5-large"


@dataclass(frozen=True)
class ModelSpec:
    """One E5 model and the public ONNX export e5ray downloads for it.

    The fields follow fastembed's model description, so that an entry can be registered
    with fastembed and downloaded by it. Architecture and how far each export was checked
    are documented in docs/user-guide.md (Models).
    """

    name: str
    dim: int
    hf_repo: str
    model_file: str = "onnx/model.onnx"
    additional_files: tuple[str, ...] = ()
    size_gb: float = 0.0


CATALOG: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "intfloat/multilingual-e5-large",
            1024,
            "Qdrant/multilingual-e5-large-onnx",
            "model.onnx",
            ("model.onnx_data",),
            2.24,
        ),
        ModelSpec("intfloat/multilingual-e5-base", 768, "Xenova/multilingual-e5-base", size_gb=1.11),
        ModelSpec("intfloat/multilingual-e5-small", 384, "Xenova/multilingual-e5-small", size_gb=0.47),
        ModelSpec("intfloat/e5-large-v2", 1024, "Xenova/e5-large-v2", size_gb=1.34),
        ModelSpec("intfloat/e5-base-v2", 768, "Xenova/e5-base-v2", size_gb=0.44),
        ModelSpec("intfloat/e5-small-v2", 384, "Xenova/e5-small-v2", size_gb=0.13),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The catalogue entry for `name` (case-insensitive), or a UsageError listing the choices."""
    for spec in CATALOG.values():
        if spec.name.lower() == name.lower():
            return spec
    raise UsageError(
        f"unknown model {name!r}; known E5 models: {', '.join(sorted(CATALOG))}. "
        "For another model pass --model-path with a local or s3:// model directory."
    )
