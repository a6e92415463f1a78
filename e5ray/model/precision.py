"""Reduced-precision copies of a model: int8 (CPU) and fp16 (GPU), made once and cached.

Each copy is a separate file with its own sha256, so its vectors belong to their own
embedding space. int8 runs behind a quality gate: before use, a sample is embedded
both ways and the copy is refused when it drifts too far from fp32.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from e5ray.errors import QualityGateError, UsageError
from e5ray.model.resolve import default_cache_dir

if TYPE_CHECKING:
    from e5ray.model.fusion import FusionReport

# A fixed multilingual sample for the int8 gate: short and long, several scripts.
GATE_SAMPLE = [
    "The library opens at nine and closes at six on weekdays.",
    "Die Bahn fährt heute wegen Bauarbeiten zwanzig Minuten später ab.",
    "Le musée propose une visite guidée gratuite le premier dimanche du mois.",
    "El informe anual muestra un aumento de las exportaciones agrícolas.",
    "Поезд прибывает на третий путь через пять минут.",
    "東京の天気は明日から雨になる予報です。",
    "今天下午的会议改到三点开始。",
    "내일 아침 회의는 온라인으로 진행됩니다.",
    "تم افتتاح الحديقة العامة الجديدة في وسط المدينة.",
    "यह पुस्तक बच्चों के लिए सरल भाषा में लिखी गई है।",
    "Η συνάντηση μεταφέρθηκε για την επόμενη εβδομάδα.",
    "Yeni köprü şehrin iki yakasını birbirine bağlıyor. " * 6,
]


def _cache_path(source: Path, tag: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    """Next to the model when that directory is writable, else in the e5ray cache."""
    name = f"{source.stem}.{tag}.onnx"
    if os.access(source.parent, os.W_OK):
        return source.parent / name
    key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / "converted" / key / name


def prepare_model_file(
    source: Path,
    precision: str,
    cache_dir: str | os.PathLike[str] | None = None,
    pooling: str = "mean",
    fuse: bool = True,
) -> Path:
    """The model file to load for `precision`, converting (once, under a lock) if needed.

    The fp16 copy carries its pooling head, so each pooling method has its own file
    (`model.fp16.onnx` for mean, as before; `model.fp16-cls.onnx` for cls). fp32 with `fuse`:
    a copy with attention fused by onnxruntime's transformer optimiser (e5ray.model.fusion), used
    only when attention did fuse; otherwise `source` itself."""
    if precision == "fp32":
        return _fused_fp32(source, cache_dir) if fuse else source
    tag = precision if precision != "fp16" or pooling == "mean" else f"fp16-{pooling}"
    target = _cache_path(source, tag, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
            return target
        tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
        if precision == "int8":
            quantize_int8(source, tmp)
            os.replace(tmp, target)
        elif precision == "fp16":
            from e5ray.model.fusion import write_report

            report = convert_fp16(source, tmp, pooling)
            os.replace(tmp, target)
            write_report(report, target)  # what fused, for whoever reads the GPU figures
        else:
            raise UsageError(f"unknown precision {precision!r}; valid: fp32, fp16, int8")
    return target


def _fused_fp32(source: Path, cache_dir: str | os.PathLike[str] | None) -> Path:
    from e5ray.model.fusion import fuse_attention, read_report, report_path

    # The optimiser needs the onnx package, which a core install does not have. Only looked up,
    # not imported: importing it took ~1 s of every worker's model load (BENCHMARKS.md, start-up),
    # and a fused copy already made (the usual case) does not need it.
    if importlib.util.find_spec("onnx") is None:
        logging.getLogger("e5ray").warning(
            "attention is not fused: the onnx package is missing (pip install 'e5ray[quant]'); "
            "vectors are the same, only slower"
        )
        return source
    target = _cache_path(source, "fused", cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        report = read_report(target) if _newer(report_path(target), source) else None
        if report is not None and report.fused and not _newer(target, source):
            report = None
        if report is None:
            # Written in a private folder under its final name, so that a split-out weights
            # file keeps the name the graph refers to; the graph moves into place last.
            work = target.parent / f".{target.name}.tmp-{os.getpid()}"
            work.mkdir(exist_ok=True)
            try:
                report = fuse_attention(source, work / target.name)
                if report.fused:
                    for path in sorted(work.iterdir(), key=lambda p: p.name == target.name):
                        os.replace(path, target.parent / path.name)
                else:  # nothing gained over the source: keep only the report
                    os.replace(report_path(work / target.name), report_path(target))
            finally:
                for path in work.glob("*"):
                    path.unlink()
                work.rmdir()
    return target if report.fused else source


def _newer(path: Path, source: Path) -> bool:
    """`path` exists and is no older than `source`."""
    try:
        return path.stat().st_mtime >= source.stat().st_mtime
    except OSError:
        return False


def quantize_int8(source: Path, target: Path) -> None:
    """onnxruntime dynamic quantisation: int8 weights, activations quantised per batch."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


def convert_fp16(source: Path, target: Path, pooling: str = "mean") -> FusionReport:
    """fp16 copy for GPUs: fuse attention with onnxruntime's transformer optimiser, convert
    weights to fp16 keeping fp32 inputs and outputs, and append the pooling head (`pooling`)
    so the device returns pooled, normalised vectors (pooling arithmetic in fp32). Returns
    what fused."""
    try:
        import onnx  # noqa: F401  (the optimiser and the graph edit need it)

        from e5ray.model.fusion import optimize_encoder, save_optimized
        from e5ray.model.graph import add_e5_pooling
    except ImportError as exc:
        raise UsageError("fp16 conversion needs the onnx package: pip install 'e5ray[gpu]'") from exc
    optimized, report = optimize_encoder(source, use_gpu=True)
    optimized.convert_float_to_float16(keep_io_types=True)
    add_e5_pooling(optimized.model, pooling=pooling)
    save_optimized(optimized, target)
    return report


def check_int8_quality(int8_path: Path, measure: Callable[[], float], min_cosine: float) -> float:
    """The int8 model's mean cosine against fp32 on GATE_SAMPLE; QualityGateError below `min_cosine`.

    `measure` embeds GATE_SAMPLE both ways and returns the mean cosine; it runs once per
    int8 file, and its result is kept beside the file: every actor of a job would
    otherwise load a second, fp32 session at start-up.
    """
    cosine = _memoised(int8_path, measure)
    if cosine < min_cosine:
        raise QualityGateError(
            f"int8 model {int8_path} agrees with fp32 at mean cosine {cosine:.4f}, "
            f"under the gate {min_cosine}; use --precision fp32 or lower --int8-min-cosine"
        )
    return cosine


def _memoised(int8_path: Path, measure: Callable[[], float]) -> float:
    stat = int8_path.stat()
    memo = int8_path.with_name(int8_path.name + ".gate.json")
    stamp = [stat.st_size, stat.st_mtime_ns]
    try:
        saved = json.loads(memo.read_text())
        if saved["stamp"] == stamp:
            return float(saved["cosine"])
    except (OSError, ValueError, KeyError):
        pass
    cosine = measure()
    try:
        memo.write_text(json.dumps({"stamp": stamp, "cosine": cosine}))
    except OSError:  # a read-only model directory: measured again next time
        pass
    return cosine
