"""The HuggingFace `tokenizers` tokenizer of a synthetic model, and the config files beside it.

The vocabulary is built from `sample_words()` by running the tokenizer's own normaliser and
pre-tokenizer over the words, so every word of the list encodes to known pieces (no UNK), and
any other text made of known characters splits into single characters. The vocabulary is
then padded with filler to the shape's `vocab_size`, so the word-embedding table has the
size of the real model's. `tokenizer_config.json` and `special_tokens_map.json` are written
as transformers writes them, because fastembed reads them.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Sequence
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from e5ray.testing.archs import Arch

MODEL_MAX_LENGTH = 512

_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# XLM-R order (fairseq): <s>=0, <pad>=1, </s>=2, <unk>=3; <mask> is the last id.
_XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
_XLMR_MASK = "<mask>"
_METASPACE = "\u2581"
# Punctuation and digits are always in the vocabulary so "query: ..." prefixes,
# numbers and ordinary sentences tokenise without UNK.
_ALWAYS_CHARS = string.punctuation + string.digits


def _normalizer(arch: Arch) -> normalizers.Normalizer:
    if arch == "bert":
        # NFC first so decomposed accents match the vocabulary; accents are kept
        # (strip_accents=None would follow lowercase and strip them, mangling Indic scripts).
        return normalizers.Sequence(
            [
                normalizers.NFC(),
                normalizers.BertNormalizer(
                    clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True
                ),
            ]
        )
    # What XLM-R's precompiled sentencepiece normaliser amounts to for ordinary text.
    return normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])


def _pre_tokenizer(arch: Arch) -> pre_tokenizers.PreTokenizer:
    if arch == "bert":
        return pre_tokenizers.BertPreTokenizer()
    return pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True)


def _pieces(arch: Arch, words: Sequence[str]) -> Iterator[str]:
    """Pre-tokenised pieces of `words`, exactly as the tokenizer will see them.

    Running the real normaliser and pre-tokenizer is what makes CJK words (split into
    single characters by the BERT normaliser), lowercasing and Unicode normalisation agree
    between vocabulary and encoding.
    """
    normalizer, pre_tokenizer = _normalizer(arch), _pre_tokenizer(arch)
    for word in words:
        for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(word)):
            if piece and piece != _METASPACE:
                yield piece


def _core_vocab(arch: Arch, words: Sequence[str]) -> list[tuple[str, float]]:
    """Specials + words + single characters, as (token, unigram score), without filler."""
    pieces = list(dict.fromkeys(_pieces(arch, words)))
    chars = set(_ALWAYS_CHARS)
    for piece in pieces:
        chars.update(piece.replace(_METASPACE, ""))
    if arch == "xlmr":
        # XLM-R is cased: without both cases, "Пётр" would hit <unk> because only "п" is listed.
        chars.update(v for c in list(chars) for v in (c.lower(), c.upper()) if len(v) == 1)
    ordered_chars = sorted(chars)
    tokens: dict[str, float] = {}
    if arch == "bert":
        tokens.update((t, 0.0) for t in _BERT_SPECIALS)
        tokens.update((p, 0.0) for p in pieces)
        tokens.update((c, 0.0) for c in ordered_chars)
        # `##c` continuations: any word made of known characters splits into pieces.
        tokens.update((f"##{c}", 0.0) for c in ordered_chars)
    else:
        tokens.update((t, 0.0) for t in _XLMR_SPECIALS)
        # Scores make the Viterbi segmentation prefer whole words over characters, and
        # fall back to "▁" + characters for unseen words.
        tokens.update((p, -5.0) for p in pieces)
        tokens.setdefault(_METASPACE, -8.0)
        tokens.update((c, -10.0) for c in ordered_chars if c not in tokens)
    return list(tokens.items())


def vocab_needed(arch: Arch, words: Sequence[str]) -> int:
    return len(_core_vocab(arch, words)) + (1 if arch == "xlmr" else 0)


def full_vocab(arch: Arch, words: Sequence[str], vocab_size: int) -> list[tuple[str, float]]:
    core = _core_vocab(arch, words)
    needed = len(core) + (1 if arch == "xlmr" else 0)
    if needed > vocab_size:
        raise ValueError(
            f"the {arch} vocabulary for these words needs {needed} entries but the shape has "
            f"vocab_size={vocab_size}; use an EncoderShape with vocab_size >= {needed}"
        )
    end = vocab_size - 1 if arch == "xlmr" else vocab_size
    # Filler stands in for the rest of a real 250k vocabulary; it never matches real text.
    vocab = core + [(f"<filler_{i}>", -100.0) for i in range(len(core), end)]
    if arch == "xlmr":
        vocab.append((_XLMR_MASK, 0.0))
    return vocab


def build_tokenizer(arch: Arch, vocab: list[tuple[str, float]]) -> Tokenizer:
    if arch == "bert":
        tokenizer = Tokenizer(
            models.WordPiece(
                {token: i for i, (token, _) in enumerate(vocab)},
                unk_token="[UNK]",
                continuing_subword_prefix="##",
                max_input_chars_per_word=100,
            )
        )
        tokenizer.decoder = decoders.WordPiece(prefix="##")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[(t, _BERT_SPECIALS.index(t)) for t in ("[CLS]", "[SEP]")],
        )
        specials = [AddedToken(t, special=True, normalized=False) for t in _BERT_SPECIALS]
    else:
        tokenizer = Tokenizer(models.Unigram(vocab, unk_id=_XLMR_SPECIALS.index("<unk>"), byte_fallback=False))
        tokenizer.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True)
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> </s> $B </s>",
            special_tokens=[(t, _XLMR_SPECIALS.index(t)) for t in ("<s>", "</s>")],
        )
        specials = [AddedToken(t, special=True, normalized=False) for t in _XLMR_SPECIALS]
        # As in XLM-R: "<mask>" swallows the space before it.
        specials.append(AddedToken(_XLMR_MASK, special=True, normalized=False, lstrip=True))
    tokenizer.normalizer = _normalizer(arch)
    tokenizer.pre_tokenizer = _pre_tokenizer(arch)
    tokenizer.add_special_tokens(specials)
    return tokenizer


def _added_token_json(content: str, *, lstrip: bool = False) -> dict[str, Any]:
    return {
        "content": content,
        "lstrip": lstrip,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": True,
    }


def tokenizer_configs(arch: Arch, vocab_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tokenizer_config.json, special_tokens_map.json) as transformers writes them."""
    if arch == "bert":
        roles = {
            "unk_token": "[UNK]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
        }
        decoder = {str(i): _added_token_json(t) for i, t in enumerate(_BERT_SPECIALS)}
        extra = {
            "do_lower_case": True,
            "strip_accents": False,
            "tokenize_chinese_chars": True,
            "tokenizer_class": "BertTokenizer",
        }
        tokens_map: dict[str, Any] = dict(roles)
    else:
        roles = {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "sep_token": "</s>",
            "pad_token": "<pad>",
            "cls_token": "<s>",
            "mask_token": _XLMR_MASK,
        }
        decoder = {str(i): _added_token_json(t) for i, t in enumerate(_XLMR_SPECIALS)}
        decoder[str(vocab_size - 1)] = _added_token_json(_XLMR_MASK, lstrip=True)
        extra = {"tokenizer_class": "XLMRobertaTokenizer"}
        tokens_map = dict(roles)
        tokens_map["mask_token"] = _added_token_json(_XLMR_MASK, lstrip=True)
        del tokens_map["mask_token"]["special"]  # special_tokens_map.json does not carry it
    config = {
        "added_tokens_decoder": decoder,
        "clean_up_tokenization_spaces": True,
        "model_max_length": MODEL_MAX_LENGTH,
        **roles,
        **extra,
    }
    return config, tokens_map
