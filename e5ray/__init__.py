"""e5ray: batch E5 embeddings on Ray, paper-faithful, with manifests and incremental refresh.

The public names are imported on first use (PEP 562): `import e5ray.cli.app` or a Ray worker
importing `e5ray.worker.worker` must not pay for onnxruntime, pandas and pyarrow.dataset before it
needs them (about 1 s of the CLI's start on a 2-CPU machine).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "E5Embedder": "e5ray.model.embedder",
    "describe_space": "e5ray.model.describe",
    "read_embeddings": "e5ray.output.read",
    "EmbeddingSpace": "e5ray.model.space",
}

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from e5ray.model.describe import describe_space
    from e5ray.model.embedder import E5Embedder
    from e5ray.model.space import EmbeddingSpace
    from e5ray.output.read import read_embeddings

__all__ = ["E5Embedder", "EmbeddingSpace", "describe_space", "read_embeddings", "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'e5ray' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups find it without this hook
    return value
