"""The error raised when an optional dependency is missing: it names the extra that installs it.

The core install (`pip install e5ray`) embeds with real models and needs neither onnx nor
the benchmark's helpers; test models and benchmarks do. Failing with the pip command is
kinder than a bare ModuleNotFoundError from deep inside a graph builder.
"""

from __future__ import annotations

EXTRAS = {"test": "tests and demo models", "bench": "jobs/benchmark.py"}


def missing_extra(package: str, needed_by: str, extras: tuple[str, ...] = ("test", "bench")) -> ImportError:
    """An ImportError saying that `needed_by` needs `package` and which extras provide it."""
    unknown = [e for e in extras if e not in EXTRAS]
    if unknown:
        raise ValueError(f"unknown extras {unknown}; valid: {', '.join(EXTRAS)}")
    options = " or ".join(f'pip install "e5ray[{e}]" ({EXTRAS[e]})' for e in extras)
    return ImportError(f"{needed_by} needs the optional {package!r} package: {options}")
