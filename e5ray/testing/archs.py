"""The two encoder architectures the synthetic models mirror, as the real multilingual E5 exports.

* ``"bert"`` (multilingual-e5-small): inputs ``input_ids``, ``attention_mask``,
  ``token_type_ids``; absolute positions ``0..L-1``; pad id 0; WordPiece tokenizer.
* ``"xlmr"`` (multilingual-e5-base/large): inputs ``input_ids``, ``attention_mask``;
  RoBERTa positions starting at ``pad_id + 1``; pad id 1; Unigram/Metaspace tokenizer.

Plain data, no heavy imports: the tokenizer, graph builder and numpy reference all read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Arch = Literal["bert", "xlmr"]

# HF's modern extended attention mask: masked keys get the most negative float32.
MASK_VALUE = float(np.finfo(np.float32).min)


@dataclass(frozen=True)
class ArchSpec:
    """What differs between the BERT and XLM-R conventions, as HF config.json states it."""

    model_type: str
    pad_id: int
    layer_norm_eps: float
    type_vocab_size: int
    # RoBERTa reserves positions 0..pad_id, so its table has pad_id + 1 extra rows.
    position_offset: int


ARCHS: dict[str, ArchSpec] = {
    "bert": ArchSpec("bert", pad_id=0, layer_norm_eps=1e-12, type_vocab_size=2, position_offset=0),
    "xlmr": ArchSpec("xlm-roberta", pad_id=1, layer_norm_eps=1e-5, type_vocab_size=1, position_offset=2),
}
MODEL_TYPE_TO_ARCH = {spec.model_type: arch for arch, spec in ARCHS.items()}
