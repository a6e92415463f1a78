"""Sizes of the synthetic encoders: the three real multilingual E5 shapes and a tiny one for tests.

Speed depends on the shape, not on the weights, so a random-weight model of a real shape
benchmarks like the real model. "tiny" has exactly the vocabulary `sample_words()` needs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from e5ray.testing.tokenizer import vocab_needed
from e5ray.testing.words import sample_words


@dataclass(frozen=True)
class EncoderShape:
    """Size of a synthetic encoder."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int = 512

    def __post_init__(self) -> None:
        for field, value in asdict(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"EncoderShape.{field} must be a positive int, got {value!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")


SHAPES: dict[str, EncoderShape] = {
    # Just the vocabulary sample_words() needs (the larger of the two architectures').
    "tiny": EncoderShape(
        layers=2,
        hidden=32,
        heads=4,
        intermediate=64,
        vocab_size=max(vocab_needed("bert", sample_words()), vocab_needed("xlmr", sample_words())),
    ),
    "e5-small": EncoderShape(12, 384, 12, 1536, 250_037),  # multilingual-e5-small
    "e5-base": EncoderShape(12, 768, 12, 3072, 250_002),  # multilingual-e5-base
    "e5-large": EncoderShape(24, 1024, 16, 4096, 250_002),  # multilingual-e5-large
}


def resolve_shape(shape: str | EncoderShape) -> EncoderShape:
    """`shape` itself, or the named shape of `SHAPES`."""
    if isinstance(shape, EncoderShape):
        return shape
    try:
        return SHAPES[shape]
    except KeyError:
        raise ValueError(f"unknown shape {shape!r}; known: {sorted(SHAPES)}") from None
