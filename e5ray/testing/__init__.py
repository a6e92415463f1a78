"""Synthetic E5-like encoders for tests, demos and benchmarks, without downloads.

`write_test_model` writes a random-weight post-LN transformer encoder as ONNX plus a
matching HuggingFace tokenizer, laid out like a real exported model directory;
`load_reference` reads the weights back and offers an independent numpy forward pass.
`python -m e5ray.testing DIR` writes the demo model used by the README's quickstart.

Modules: `archs` (bert / xlmr conventions), `shapes` (sizes), `words` (the multilingual
word list), `tokenizer`, `weights`, `models` (ONNX graph and files), `reference` (numpy).
Writing and reading ONNX needs the optional onnx package (`pip install "e5ray[test]"`);
the names that need it are imported on first use, so `SHAPES` and `sample_words` work
without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from e5ray.testing.reference import ReferenceEncoder
from e5ray.testing.shapes import SHAPES, EncoderShape
from e5ray.testing.words import sample_words

if TYPE_CHECKING:
    from e5ray.testing.models import write_test_model
    from e5ray.testing.reference import load_reference

__all__ = ["SHAPES", "EncoderShape", "ReferenceEncoder", "load_reference", "sample_words", "write_test_model"]

# Names whose modules import onnx, resolved when first used.
_NEEDS_ONNX = {"write_test_model": "e5ray.testing.models", "load_reference": "e5ray.testing.reference"}


def __getattr__(name: str) -> Any:
    if name in _NEEDS_ONNX:
        return getattr(importlib.import_module(_NEEDS_ONNX[name]), name)
    raise AttributeError(f"module 'e5ray.testing' has no attribute {name!r}")
