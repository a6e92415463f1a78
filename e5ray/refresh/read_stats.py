"""What reading the previous version costs: requests made and bytes read, counted.

Row-level refresh is judged by these numbers (the README's "Row-level refresh" gives them
per corpus size; the run's summary and each entry's `reuse.lookup` report them), so every
read of the output goes through a counter: `CountedFile` for the reads pyarrow makes
itself, explicit increments where e5ray fetches byte ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ReadStats:
    """Requests made to, and bytes read from, the output's previous version."""

    requests: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def add(self, other: ReadStats) -> None:
        self.requests += other.requests
        self.bytes += other.bytes
        self.seconds += other.seconds

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "bytes": self.bytes, "seconds": round(self.seconds, 3)}


class CountedFile:
    """A read-only file object that counts the reads pyarrow makes through it and their bytes."""

    def __init__(self, fh: Any, stats: ReadStats) -> None:
        self._fh, self._stats = fh, stats

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._stats.requests += 1
        self._stats.bytes += len(data)
        return bytes(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._fh.seek(offset, whence))

    def tell(self) -> int:
        return int(self._fh.tell())

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return bool(self._fh.closed)

    def close(self) -> None:
        self._fh.close()
