"""The versions of the libraries that can move vectors, put on record in every version.

A tokenizer release can change how a text splits into tokens, and an onnxruntime release can
change the kernels (and so the last bits) of every vector, without any model file, prefix or
pooling setting changing: the space fingerprint cannot see it. So each run records, in the
manifest's run section, the versions of those libraries and the hash of the lock
(`constraints.txt`) it was installed from, and a refresh whose versions differ from the
previous version's logs a warning naming each one. A difference is a warning, not a refusal:
vectors from neighbouring releases agree to ~1e-6, and refusing would block every upgrade.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# Packages whose release can change a vector without changing the space fingerprint.
VECTOR_LIBRARIES = ("onnxruntime", "onnxruntime-gpu", "tokenizers", "numpy")
# The lock sits at the repository root: found from a checkout, an editable install, or a
# Ray job's uploaded working dir; a wheel install has none and records "none".
LOCK_FILE = Path(__file__).resolve().parents[2] / "constraints.txt"


def library_versions() -> dict[str, str]:
    """Installed version of each vector library (those installed) plus the lock's hash."""
    return dict(_installed())


@lru_cache(maxsize=1)  # asked once per output file; what is installed does not change in a process
def _installed() -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = {}
    for name in VECTOR_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    found["lock"] = hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()[:16] if LOCK_FILE.is_file() else "none"
    return tuple(found.items())


def changed_libraries(previous: dict[str, str] | None, current: dict[str, str]) -> list[str]:
    """`name old -> new` for every recorded library whose version differs.

    A previous version without a record (written before versions were recorded) has nothing
    to compare, so nothing is reported; a library present on only one side is reported.
    """
    if not previous:
        return []
    return [
        f"{name} {previous.get(name, 'absent')} -> {current.get(name, 'absent')}"
        for name in sorted(set(previous) | set(current))
        if previous.get(name) != current.get(name)
    ]
