"""Synthetic E5-like encoders for tests and benchmarks, without downloads.

`write_test_model` writes a random-weight post-LN transformer encoder as ONNX plus a
matching HuggingFace `tokenizers` tokenizer, laid out like a real exported model
directory (`model.onnx` [+ `model.onnx_data`], `tokenizer.json`, `tokenizer_config.json`,
`special_tokens_map.json`, `config.json`). `load_reference` reads the weights back from
the ONNX initializers and offers an independent numpy forward pass of the same network.

Two architectures mirror the real multilingual E5 exports:

* ``"bert"`` (multilingual-e5-small): inputs ``input_ids``, ``attention_mask``,
  ``token_type_ids``; absolute positions ``0..L-1``; pad id 0; WordPiece tokenizer.
* ``"xlmr"`` (multilingual-e5-base/large): inputs ``input_ids``, ``attention_mask``;
  RoBERTa positions starting at ``pad_id + 1``; pad id 1; Unigram/Metaspace tokenizer.

Needs the optional ``onnx`` package (the ``test``/``quant`` extras).
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

__all__ = [
    "EncoderShape",
    "SHAPES",
    "ReferenceEncoder",
    "load_reference",
    "sample_words",
    "write_test_model",
]

Arch = Literal["bert", "xlmr"]

# Standard BERT initializer range; small enough that attention and FFN only perturb
# the residual stream, so the output at a position is dominated by its own token.
INIT_STD = 0.02
# Word embeddings are much larger than position/type embeddings so different tokens give
# clearly different outputs and mean pooling differs a lot from first-token pooling.
WORD_EMBEDDING_STD = 0.5
# Above this many weight bytes the model goes to `<onnx_name>_data`: protobuf cannot
# serialise messages over 2 GiB, and the real e5-large export is split the same way.
EXTERNAL_DATA_THRESHOLD = int(1.5 * 2**30)
# Offsets in the external data file are page aligned so onnxruntime can mmap them.
_EXTERNAL_ALIGNMENT = 4096
# HF's modern extended attention mask: masked keys get the most negative float32.
_MASK_VALUE = float(np.finfo(np.float32).min)
OPSET = 17
# IR 8 is what opset 17 shipped with; keeps the files loadable by older onnxruntime.
IR_VERSION = 8
MODEL_MAX_LENGTH = 512


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


@dataclass(frozen=True)
class _ArchSpec:
    model_type: str
    pad_id: int
    layer_norm_eps: float
    type_vocab_size: int
    # RoBERTa reserves positions 0..pad_id, so its table has pad_id + 1 extra rows.
    position_offset: int


_ARCHS: dict[str, _ArchSpec] = {
    "bert": _ArchSpec("bert", pad_id=0, layer_norm_eps=1e-12, type_vocab_size=2, position_offset=0),
    "xlmr": _ArchSpec("xlm-roberta", pad_id=1, layer_norm_eps=1e-5, type_vocab_size=1, position_offset=2),
}
_MODEL_TYPE_TO_ARCH = {spec.model_type: arch for arch, spec in _ARCHS.items()}

_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# XLM-R order (fairseq): <s>=0, <pad>=1, </s>=2, <unk>=3; <mask> is the last id.
_XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
_XLMR_MASK = "<mask>"
_METASPACE = "\u2581"
# Punctuation and digits are always in the vocabulary so "query: ..." prefixes,
# numbers and ordinary sentences tokenise without UNK.
_ALWAYS_CHARS = string.punctuation + string.digits


# fmt: off
_SAMPLE_WORDS: dict[str, list[str]] = {
    "en": ["query", "passage", "the", "a", "of", "and", "to", "in", "is", "for", "on", "with",
           "what", "how", "why", "when", "where", "who", "water", "fire", "earth", "city",
           "country", "house", "school", "book", "music", "science", "history", "language",
           "computer", "weather", "river", "mountain", "people", "time", "year", "day", "good",
           "new", "large", "small", "fast", "learn", "read", "write", "search", "document",
           "model", "vector", "embedding", "London", "Hello", "world"],
    "de": ["Haus", "Wasser", "Stadt", "Land", "Buch", "Schule", "Straße", "Brücke", "Mädchen",
           "Junge", "Frau", "Mann", "Kind", "Zeit", "Jahr", "heute", "morgen", "schön", "groß",
           "klein", "gut", "und", "ist", "nicht", "mit", "für", "über", "Geschichte",
           "Wissenschaft", "Sprache", "Fluss", "Berg", "Suche", "Berlin"],
    "fr": ["maison", "eau", "ville", "pays", "livre", "école", "rue", "pont", "fille", "garçon",
           "femme", "homme", "enfant", "temps", "année", "demain", "beau", "grand", "petit",
           "bon", "et", "est", "pas", "avec", "pour", "très", "déjà", "français", "été",
           "histoire", "langue", "rivière", "montagne", "cœur", "Paris"],
    "es": ["casa", "agua", "ciudad", "país", "libro", "escuela", "calle", "puente", "niña",
           "niño", "mujer", "hombre", "tiempo", "año", "hoy", "mañana", "hermoso", "grande",
           "pequeño", "bueno", "y", "es", "no", "con", "para", "también", "canción", "corazón",
           "historia", "ciencia", "idioma", "río", "montaña", "búsqueda", "Madrid"],
    "it": ["acqua", "città", "paese", "scuola", "strada", "ponte", "ragazza", "ragazzo",
           "donna", "uomo", "bambino", "tempo", "anno", "oggi", "domani", "bello", "piccolo",
           "buono", "perché", "così", "grazie", "Roma"],
    "pt": ["água", "cidade", "coração", "obrigado", "não", "você", "maçã", "pão", "irmão",
           "escola", "Lisboa"],
    "tr": ["ev", "su", "şehir", "ülke", "kitap", "okul", "sokak", "köprü", "kız", "kadın",
           "adam", "çocuk", "zaman", "yıl", "bugün", "yarın", "güzel", "büyük", "küçük", "iyi",
           "ve", "değil", "ile", "için", "teşekkürler", "merhaba", "İstanbul", "arama"],
    "pl": ["dom", "woda", "miasto", "kraj", "książka", "szkoła", "ulica", "most", "dziewczyna",
           "chłopiec", "kobieta", "mężczyzna", "dziecko", "czas", "rok", "dzisiaj", "jutro",
           "piękny", "duży", "mały", "dobry", "dziękuję", "cześć", "źródło", "żółw", "Warszawa"],
    "ru": ["дом", "вода", "город", "страна", "книга", "школа", "улица", "мост", "девочка",
           "мальчик", "женщина", "мужчина", "ребёнок", "время", "год", "сегодня", "завтра",
           "красивый", "большой", "маленький", "хороший", "и", "это", "не", "с", "для",
           "спасибо", "привет", "история", "наука", "язык", "река", "гора", "поиск", "Москва"],
    "uk": ["дякую", "місто", "їжа", "ґанок", "Київ"],
    "el": ["σπίτι", "νερό", "πόλη", "χώρα", "βιβλίο", "σχολείο", "δρόμος", "γέφυρα", "κορίτσι",
           "αγόρι", "γυναίκα", "άντρας", "παιδί", "χρόνος", "σήμερα", "αύριο", "όμορφος",
           "μεγάλος", "μικρός", "καλός", "και", "είναι", "δεν", "με", "για", "ευχαριστώ",
           "γεια", "ιστορία", "επιστήμη", "γλώσσα", "ποτάμι", "βουνό", "Αθήνα"],
    "ar": ["بيت", "ماء", "مدينة", "بلد", "كتاب", "مدرسة", "شارع", "جسر", "بنت", "ولد", "امرأة",
           "رجل", "طفل", "وقت", "سنة", "اليوم", "غدا", "جميل", "كبير", "صغير", "جيد", "هو", "لا",
           "مع", "من", "شكرا", "مرحبا", "تاريخ", "علم", "لغة", "نهر", "جبل", "بحث", "القاهرة"],
    "he": ["בית", "מים", "עיר", "ספר", "שלום", "תודה", "ילד", "אישה", "זמן", "שנה", "היום",
           "מחר", "יפה", "גדול", "קטן", "טוב"],
    "hi": ["घर", "पानी", "शहर", "देश", "किताब", "स्कूल", "सड़क", "पुल", "लड़की", "लड़का", "औरत",
           "आदमी", "बच्चा", "समय", "साल", "आज", "कल", "सुंदर", "बड़ा", "छोटा", "अच्छा", "और",
           "है", "नहीं", "के", "लिए", "धन्यवाद", "नमस्ते", "इतिहास", "विज्ञान", "भाषा", "नदी",
           "पहाड़", "खोज", "दिल्ली"],
    "bn": ["বাড়ি", "জল", "শহর", "বই", "ধন্যবাদ", "ভাষা"],
    "zh": ["水", "火", "城市", "国家", "房子", "学校", "书", "音乐", "科学", "历史", "语言", "电脑",
           "天气", "河", "山", "人", "时间", "年", "今天", "明天", "好", "新", "大", "小", "我",
           "你", "他", "是", "的", "不", "和", "谢谢", "你好", "中国", "北京", "搜索", "文档", "学习"],
    "ja": ["日本", "日本語", "東京", "本", "音楽", "歴史", "言葉", "天気", "川", "時間", "今日",
           "明日", "ありがとう", "こんにちは", "さようなら", "おはよう", "すみません", "はい",
           "いいえ", "食べる", "飲む", "見る", "行く", "大きい", "小さい", "コンピューター",
           "テレビ", "ラーメン", "カメラ", "ホテル", "です", "ます", "私", "猫", "犬", "検索"],
    "ko": ["집", "물", "도시", "나라", "책", "학교", "거리", "다리", "소녀", "소년", "여자", "남자",
           "아이", "시간", "오늘", "내일", "아름다운", "큰", "작은", "좋은", "그리고", "입니다",
           "감사합니다", "안녕하세요", "역사", "과학", "언어", "강", "산", "검색", "한국어", "서울"],
    "vi": ["nhà", "nước", "thành", "phố", "sách", "trường", "cảm", "ơn", "xin", "chào", "Việt",
           "Nam", "tiếng", "người", "hôm", "nay"],
    "th": ["บ้าน", "น้ำ", "เมือง", "หนังสือ", "โรงเรียน", "ขอบคุณ", "สวัสดี", "ภาษา", "ไทย"],
}
# fmt: on


def sample_words() -> list[str]:
    """A built-in multilingual word list (20 languages, 13 scripts), duplicates removed."""
    return list(dict.fromkeys(word for words in _SAMPLE_WORDS.values() for word in words))


# ---------------------------------------------------------------------------------------
# Tokenizer


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


def _vocab_needed(arch: Arch, words: Sequence[str]) -> int:
    return len(_core_vocab(arch, words)) + (1 if arch == "xlmr" else 0)


def _full_vocab(arch: Arch, words: Sequence[str], vocab_size: int) -> list[tuple[str, float]]:
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


def _build_tokenizer(arch: Arch, vocab: list[tuple[str, float]]) -> Tokenizer:
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


def _tokenizer_configs(arch: Arch, vocab_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
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


# ---------------------------------------------------------------------------------------
# Weights and ONNX graph


@dataclass(frozen=True)
class _WeightSpec:
    name: str
    dims: tuple[int, ...]
    kind: Literal["word", "normal", "ones", "zeros"]
    # nn.Embedding(padding_idx=...) zero-initialises the pad row, as HF does.
    zero_row: int | None = None


def _weight_specs(arch: Arch, shape: EncoderShape) -> Iterator[_WeightSpec]:
    """Initializers in generation order (the order fixes what a seed produces).

    Names follow the HF module names; linear weights are stored (in, out), i.e. already
    transposed for MatMul, as torch.onnx exports them.
    """
    spec = _ARCHS[arch]
    h, i = shape.hidden, shape.intermediate
    yield _WeightSpec("embeddings.word_embeddings.weight", (shape.vocab_size, h), "word", spec.pad_id)
    positions = shape.max_positions + spec.position_offset
    # Only RoBERTa's position table has a padding_idx.
    yield _WeightSpec(
        "embeddings.position_embeddings.weight", (positions, h), "normal", spec.pad_id if spec.position_offset else None
    )
    yield _WeightSpec("embeddings.token_type_embeddings.weight", (spec.type_vocab_size, h), "normal")
    yield _WeightSpec("embeddings.LayerNorm.weight", (h,), "ones")
    yield _WeightSpec("embeddings.LayerNorm.bias", (h,), "zeros")
    for layer in range(shape.layers):
        p = f"encoder.layer.{layer}."
        for proj in ("query", "key", "value"):
            yield _WeightSpec(f"{p}attention.self.{proj}.weight", (h, h), "normal")
            yield _WeightSpec(f"{p}attention.self.{proj}.bias", (h,), "normal")
        yield _WeightSpec(f"{p}attention.output.dense.weight", (h, h), "normal")
        yield _WeightSpec(f"{p}attention.output.dense.bias", (h,), "normal")
        yield _WeightSpec(f"{p}attention.output.LayerNorm.weight", (h,), "ones")
        yield _WeightSpec(f"{p}attention.output.LayerNorm.bias", (h,), "zeros")
        yield _WeightSpec(f"{p}intermediate.dense.weight", (h, i), "normal")
        yield _WeightSpec(f"{p}intermediate.dense.bias", (i,), "normal")
        yield _WeightSpec(f"{p}output.dense.weight", (i, h), "normal")
        yield _WeightSpec(f"{p}output.dense.bias", (h,), "normal")
        yield _WeightSpec(f"{p}output.LayerNorm.weight", (h,), "ones")
        yield _WeightSpec(f"{p}output.LayerNorm.bias", (h,), "zeros")


def _weight_bytes(arch: Arch, shape: EncoderShape) -> int:
    return sum(4 * math.prod(w.dims) for w in _weight_specs(arch, shape))


def _generate(rng: np.random.Generator, weight: _WeightSpec) -> np.ndarray:
    if weight.kind == "ones":
        return np.ones(weight.dims, np.float32)
    if weight.kind == "zeros":
        return np.zeros(weight.dims, np.float32)
    # float32 straight from the generator: the e5-small word table is 96M values.
    array = rng.standard_normal(weight.dims, dtype=np.float32)
    array *= WORD_EMBEDDING_STD if weight.kind == "word" else INIT_STD
    if weight.zero_row is not None:
        array[weight.zero_row] = 0.0
    return array


class _GraphBuilder:
    """Collects nodes and initializers, handing out unique tensor names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._count = 0

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        self._count += 1
        output = out or f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=f"{op_type}_{self._count}", **attrs))
        return output

    def const(self, name: str, value: Any, dtype: Any) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name=f"const.{name}"))
        return f"const.{name}"


def _build_graph(arch: Arch, shape: EncoderShape) -> onnx.GraphProto:
    """The network, with its small constants but without the weight initializers."""
    spec = _ARCHS[arch]
    g = _GraphBuilder()
    eps = spec.layer_norm_eps
    heads, head_dim = shape.heads, shape.hidden // shape.heads

    def layer_norm(x: str, prefix: str) -> str:
        return g.op("LayerNormalization", x, f"{prefix}.weight", f"{prefix}.bias", axis=-1, epsilon=eps)

    def linear(x: str, prefix: str) -> str:
        return g.op("Add", g.op("MatMul", x, f"{prefix}.weight"), f"{prefix}.bias")

    # Embeddings.
    words = g.op("Gather", "embeddings.word_embeddings.weight", "input_ids", axis=0)
    if arch == "bert":
        seq_len = g.op("Gather", g.op("Shape", "input_ids"), g.const("one_idx", 1, np.int64), axis=0)
        positions = g.op("Range", g.const("zero", 0, np.int64), seq_len, g.const("one", 1, np.int64))
        types = g.op("Gather", "embeddings.token_type_embeddings.weight", "token_type_ids", axis=0)
    else:
        # HF create_position_ids_from_input_ids: cumsum over non-pad tokens, offset by pad id.
        pad = g.const("pad_id", spec.pad_id, np.int64)
        not_pad = g.op("Cast", g.op("Not", g.op("Equal", "input_ids", pad)), to=TensorProto.INT64)
        cumsum = g.op("CumSum", not_pad, g.const("seq_axis", 1, np.int64))
        positions = g.op("Add", g.op("Mul", cumsum, not_pad), pad)
        # No token_type_ids input: the single type row is added everywhere.
        types = g.op("Gather", "embeddings.token_type_embeddings.weight", g.const("zero", 0, np.int64), axis=0)
    pos_emb = g.op("Gather", "embeddings.position_embeddings.weight", positions, axis=0)
    x = layer_norm(g.op("Add", g.op("Add", words, pos_emb), types), "embeddings.LayerNorm")

    # Additive attention mask (batch, 1, 1, keys).
    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    mask = g.op("Unsqueeze", mask, g.const("mask_axes", [1, 2], np.int64))
    one_f = g.const("one_f", 1.0, np.float32)
    mask = g.op("Mul", g.op("Sub", one_f, mask), g.const("mask_value", _MASK_VALUE, np.float32))

    split_heads = g.const("split_heads", [0, 0, heads, head_dim], np.int64)
    merge_heads = g.const("merge_heads", [0, 0, shape.hidden], np.int64)
    scale = g.const("sqrt_head_dim", math.sqrt(head_dim), np.float32)
    sqrt2 = g.const("sqrt2", math.sqrt(2.0), np.float32)
    half = g.const("half", 0.5, np.float32)
    for layer in range(shape.layers):
        p = f"encoder.layer.{layer}."
        q = g.op("Transpose", g.op("Reshape", linear(x, p + "attention.self.query"), split_heads), perm=[0, 2, 1, 3])
        k = g.op("Transpose", g.op("Reshape", linear(x, p + "attention.self.key"), split_heads), perm=[0, 2, 3, 1])
        v = g.op("Transpose", g.op("Reshape", linear(x, p + "attention.self.value"), split_heads), perm=[0, 2, 1, 3])
        scores = g.op("Add", g.op("Div", g.op("MatMul", q, k), scale), mask)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge_heads)
        attn = linear(context, p + "attention.output.dense")
        x = layer_norm(g.op("Add", attn, x), p + "attention.output.LayerNorm")
        # Exact (erf) GELU, as BERT's "gelu".
        inner = linear(x, p + "intermediate.dense")
        gelu = g.op("Mul", g.op("Mul", inner, half), g.op("Add", g.op("Erf", g.op("Div", inner, sqrt2)), one_f))
        ffn = linear(gelu, p + "output.dense")
        x = layer_norm(g.op("Add", ffn, x), p + "output.LayerNorm")
    g.op("Identity", x, out="last_hidden_state")

    dims = ["batch_size", "sequence_length"]
    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if arch == "bert" else [])
    return helper.make_graph(
        g.nodes,
        f"e5ray_test_{arch}",
        [helper.make_tensor_value_info(name, TensorProto.INT64, dims) for name in input_names],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [*dims, shape.hidden])],
        initializer=g.initializers,
    )


def _add_weight(graph: onnx.GraphProto, weight: _WeightSpec) -> TensorProto:
    """Append an empty float initializer in place (extend/from_array would copy the bytes)."""
    tensor = graph.initializer.add()
    tensor.name = weight.name
    tensor.data_type = TensorProto.FLOAT
    tensor.dims.extend(weight.dims)
    return tensor


def _set_external(tensor: TensorProto, location: str, offset: int, length: int) -> None:
    # onnx.external_data_helper.set_external_data insists on raw_data being present first.
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _resolve_shape(shape: str | EncoderShape) -> EncoderShape:
    if isinstance(shape, EncoderShape):
        return shape
    try:
        return SHAPES[shape]
    except KeyError:
        raise ValueError(f"unknown shape {shape!r}; known: {sorted(SHAPES)}") from None


def _model_config(arch: Arch, shape: EncoderShape, seed: int) -> dict[str, Any]:
    spec = _ARCHS[arch]
    config: dict[str, Any] = {
        "architectures": ["BertModel" if arch == "bert" else "XLMRobertaModel"],
        "model_type": spec.model_type,
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": shape.hidden,
        "initializer_range": INIT_STD,
        "intermediate_size": shape.intermediate,
        "layer_norm_eps": spec.layer_norm_eps,
        "max_position_embeddings": shape.max_positions + spec.position_offset,
        "num_attention_heads": shape.heads,
        "num_hidden_layers": shape.layers,
        "pad_token_id": spec.pad_id,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "type_vocab_size": spec.type_vocab_size,
        "vocab_size": shape.vocab_size,
        # Provenance, so a directory can be recognised as synthetic.
        "e5ray_testmodel": {"arch": arch, "seed": seed, "shape": asdict(shape)},
    }
    if arch == "xlmr":
        config.update(bos_token_id=0, eos_token_id=2)
    return config


def write_test_model(
    directory: str | Path,
    *,
    arch: Arch = "bert",
    shape: str | EncoderShape = "tiny",
    words: Sequence[str] | None = None,
    seed: int = 0,
    onnx_name: str = "model.onnx",
    external_data: bool | None = None,
) -> Path:
    """Write a random-weight E5-like encoder and its tokenizer into `directory`.

    `external_data=None` stores the weights in `<onnx_name>_data` only when they exceed
    ~1.5 GiB (e5-large); True/False forces it. Returns the directory.
    """
    if arch not in _ARCHS:
        raise ValueError(f"arch must be one of {sorted(_ARCHS)}, got {arch!r}")
    encoder = _resolve_shape(shape)
    word_list = sample_words() if words is None else list(words)
    vocab = _full_vocab(arch, word_list, encoder.vocab_size)  # validates before any heavy work

    root = Path(directory)
    onnx_path = root / onnx_name
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    data_name = onnx_path.name + "_data"
    data_path = onnx_path.parent / data_name
    if external_data is None:
        external_data = _weight_bytes(arch, encoder) > EXTERNAL_DATA_THRESHOLD

    rng = np.random.default_rng(seed)
    model = helper.make_model(
        _build_graph(arch, encoder),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="e5ray.testmodels",
        ir_version=IR_VERSION,
    )
    if external_data:
        # Stream each tensor to disk as it is generated: the in-memory proto stays tiny
        # and peak memory is one tensor, not the whole (possibly >2 GiB) model.
        with open(data_path, "wb") as data_file:
            for weight in _weight_specs(arch, encoder):
                array = _generate(rng, weight).astype("<f4", copy=False)
                offset = data_file.tell()
                offset += -offset % _EXTERNAL_ALIGNMENT
                data_file.seek(offset)  # the gap reads back as zeros
                array.tofile(data_file)
                _set_external(_add_weight(model.graph, weight), data_name, offset, array.nbytes)
                del array
    else:
        data_path.unlink(missing_ok=True)  # a stale split from an earlier write would mislead
        for weight in _weight_specs(arch, encoder):
            _add_weight(model.graph, weight).raw_data = _generate(rng, weight).astype("<f4", copy=False).tobytes()
    # Serialised directly: tensors that are already external need no onnx.save rewriting.
    onnx_path.write_bytes(model.SerializeToString())
    del model
    # The path form of the checker also verifies external data files and works past 2 GiB.
    onnx.checker.check_model(str(onnx_path))

    tokenizer = _build_tokenizer(arch, vocab)
    tokenizer.save(str(root / "tokenizer.json"))
    tokenizer_config, tokens_map = _tokenizer_configs(arch, encoder.vocab_size)
    for filename, content in (
        ("tokenizer_config.json", tokenizer_config),
        ("special_tokens_map.json", tokens_map),
        ("config.json", _model_config(arch, encoder, seed)),
    ):
        (root / filename).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return root


# ---------------------------------------------------------------------------------------
# Reference forward pass


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _erf(x: np.ndarray) -> np.ndarray:
    """float64 erf to ~1e-15, vectorised (numpy has none and scipy is not a dependency)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    out = np.ones_like(a)
    # |x| < 3: Maclaurin series; 60 terms reach 1e-17 at |x| = 3.
    small = a < 3.0
    xs = a[small]
    term, total, x2 = xs.copy(), xs.copy(), xs * xs
    for n in range(1, 60):
        term *= -x2 / n
        total += term / (2 * n + 1)
    out[small] = total * (2.0 / math.sqrt(math.pi))
    # 3 <= |x| < 6: erfc continued fraction, evaluated backwards; beyond 6 erf is 1.
    mid = (a >= 3.0) & (a < 6.0)
    xm = a[mid]
    frac = xm.copy()
    for k in range(60, 0, -1):
        frac = xm + (k / 2.0) / frac
    out[mid] = 1.0 - np.exp(-xm * xm) / math.sqrt(math.pi) / frac
    return np.copysign(out, x)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class ReferenceEncoder:
    """Independent numpy (float64) forward pass of a `write_test_model` network."""

    def __init__(self, weights: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> None:
        model_type = config["model_type"]
        if model_type not in _MODEL_TYPE_TO_ARCH:
            raise ValueError(f"unsupported model_type {model_type!r}")
        self.arch: Arch = _MODEL_TYPE_TO_ARCH[model_type]  # type: ignore[assignment]
        self.weights = dict(weights)
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.pad_token_id = int(config["pad_token_id"])
        self.layer_norm_eps = float(config["layer_norm_eps"])

    def _w(self, name: str) -> np.ndarray:
        # Weights stay float32 in memory (e5-large is 2 GiB); maths is float64.
        return self.weights[name].astype(np.float64)

    def _linear(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ self._w(f"{prefix}.weight") + self._w(f"{prefix}.bias")

    def _ln(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return _layer_norm(x, self._w(f"{prefix}.weight"), self._w(f"{prefix}.bias"), self.layer_norm_eps)

    def last_hidden_state(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """float64 (batch, seq, hidden) output of the encoder."""
        ids = np.asarray(input_ids, dtype=np.int64)
        mask = np.asarray(attention_mask, dtype=np.int64)
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(f"input_ids {ids.shape} and attention_mask {mask.shape} must be equal 2-D shapes")
        types = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids, dtype=np.int64)
        batch, seq = ids.shape

        if self.arch == "bert":
            positions = np.broadcast_to(np.arange(seq), ids.shape)
        else:
            not_pad = (ids != self.pad_token_id).astype(np.int64)
            positions = np.cumsum(not_pad, axis=1) * not_pad + self.pad_token_id
        x = (
            self.weights["embeddings.word_embeddings.weight"][ids].astype(np.float64)
            + self.weights["embeddings.position_embeddings.weight"][positions].astype(np.float64)
            + self.weights["embeddings.token_type_embeddings.weight"][types].astype(np.float64)
        )
        x = self._ln(x, "embeddings.LayerNorm")

        additive = (1.0 - mask.astype(np.float64))[:, None, None, :] * _MASK_VALUE
        head_dim = self.hidden // self.heads

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(batch, seq, self.heads, head_dim).transpose(0, 2, 1, 3)

        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."
            q = split(self._linear(x, p + "attention.self.query"))
            k = split(self._linear(x, p + "attention.self.key"))
            v = split(self._linear(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim) + additive
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, self.hidden)
            x = self._ln(self._linear(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            inner = _gelu(self._linear(x, p + "intermediate.dense"))
            x = self._ln(self._linear(inner, p + "output.dense") + x, p + "output.LayerNorm")
        return x


def load_reference(directory: str | Path, *, onnx_name: str = "model.onnx") -> ReferenceEncoder:
    """Build a `ReferenceEncoder` from the initializers of `directory/onnx_name`."""
    root = Path(directory)
    onnx_path = root / onnx_name
    config = json.loads((root / "config.json").read_text(encoding="utf-8"))
    # External data is read tensor by tensor by to_array instead of into the proto.
    model = onnx.load(str(onnx_path), load_external_data=False)
    weights = {
        tensor.name: numpy_helper.to_array(tensor, base_dir=str(onnx_path.parent))
        for tensor in model.graph.initializer
        if not tensor.name.startswith("const.")
    }
    return ReferenceEncoder(weights, config)


SHAPES: dict[str, EncoderShape] = {
    # Just the vocabulary sample_words() needs (the larger of the two architectures').
    "tiny": EncoderShape(
        layers=2,
        hidden=32,
        heads=4,
        intermediate=64,
        vocab_size=max(_vocab_needed("bert", sample_words()), _vocab_needed("xlmr", sample_words())),
    ),
    "e5-small": EncoderShape(12, 384, 12, 1536, 250_037),  # multilingual-e5-small
    "e5-base": EncoderShape(12, 768, 12, 3072, 250_002),  # multilingual-e5-base
    "e5-large": EncoderShape(24, 1024, 16, 4096, 250_002),  # multilingual-e5-large
}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m e5ray.testmodels DIR`: write a random-weight demo model (no downloads)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("directory")
    parser.add_argument("--arch", choices=sorted(_ARCHS), default="bert")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = write_test_model(args.directory, arch=args.arch, shape=args.shape, seed=args.seed)
    print(f"wrote a random-weight {args.arch} encoder of shape {args.shape} to {path} (for demos and tests only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
