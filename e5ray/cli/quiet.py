"""Keep known, harmless native log lines off the user's terminal.

Ray's C++ core writes some lines straight to file descriptor 2, past Python's logging:
on every Ray Data run, an error-level `core_worker.cc ... has constructor arguments in
the object store and max_restarts > 0` (ray-project/ray#57733: Ray Data's own actor
arguments trigger it, nothing the job passes). `filtered_stderr` puts a pipe on fd 2 for
the duration of a run and forwards every line except those in `NOISE`. Interactive
output (the progress bar) must not go through the pipe, which is line-based: the
context yields a stream on the original stderr for it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

NOISE: tuple[bytes, ...] = (b"has constructor arguments in the object store and max_restarts > 0",)


@contextmanager
def filtered_stderr(enabled: bool = True, noise: tuple[bytes, ...] = NOISE) -> Iterator[TextIO]:
    """Drop `noise` lines written to fd 2 while the block runs; yields the real stderr."""
    if not enabled:
        yield sys.stderr
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters, some test runners)
        yield sys.stderr
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    real = os.fdopen(os.dup(saved), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="replace")

    def pump() -> None:
        with os.fdopen(read_end, "rb") as source:
            for line in source:  # ends when every copy of the write end is closed
                if not any(pattern in line for pattern in noise):
                    try:
                        os.write(saved, line)
                    except OSError:
                        return

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield real
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes our write end; processes we started may keep theirs a while
        thread.join(timeout=2)
        real.close()
        if not thread.is_alive():
            os.close(saved)
