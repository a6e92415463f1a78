"""e5ray: batch E5 embeddings on Ray, paper-faithful, with manifests and incremental refresh."""

from __future__ import annotations

__version__ = "0.1.0"

from e5ray.embedder import E5Embedder  # noqa: E402
from e5ray.model_space import describe_space  # noqa: E402
from e5ray.read import read_embeddings  # noqa: E402
from e5ray.space import EmbeddingSpace  # noqa: E402

__all__ = ["E5Embedder", "EmbeddingSpace", "describe_space", "read_embeddings", "__version__"]
