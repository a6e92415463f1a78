"""Live progress of a run: a bar on a terminal, a line every few seconds elsewhere, and
`progress.json` in the output.

The driver feeds `Progress` what it learns: the plan (how many shards and source bytes
are left to embed), each finished shard's entry, and optionally rows and tokens as
workers report them within a shard. Everything shown is derived from those facts:
- tokens/s over the embedding so far (wall clock since the first task was handed out);
- ETA = remaining source bytes x measured tokens per source byte / tokens/s. Bytes are
  known for every shard before it starts, tokens only after; the ratio measured on the
  finished shards carries to the rest. No ETA is shown before the first shard finishes.

`progress.json` is replaced atomically (at most every `json_every_s`, and at the end), in a
thread of its own (the driver waits at most `JSON_WAIT_S` for the first and last write, and
never on a store that stopped answering),
so a dashboard or a second shell can follow a run on another machine:
`{"run_id", "state": running|done|failed|interrupted, "shards": {...}, "rows", "tokens",
"bytes_done", "bytes_total", "tokens_per_s", "eta_s", "updated"}`.
Nothing in the output's contract depends on it; `gc` leaves it alone.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from e5ray.output.layout import PROGRESS_FILE as PROGRESS_FILE

JSON_WAIT_S = 2.0  # how long the first and the last write of progress.json may hold the driver

MODES = ("auto", "bar", "lines", "off")
BAR_WIDTH = 24


def _human(n: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}G"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


@dataclass
class Counts:
    shards_total: int = 0  # shards this run must embed
    shards_done: int = 0
    bytes_total: int = 0  # source bytes of the shards to embed
    bytes_done: int = 0
    rows: int = 0  # embedded by this run
    rejected: int = 0
    tokens: int = 0
    carried: int = 0  # shards carried from the previous version (not read)
    reused: int = 0  # shards an interrupted run finished, reused
    partial_rows: int = 0  # rows reported by workers for shards not yet finished
    partial_tokens: int = 0


class Progress:
    """Progress of one run. Thread-safe: a refresh thread draws while the driver feeds it."""

    def __init__(
        self,
        mode: str = "auto",
        stream: TextIO | None = None,
        interval_s: float = 10.0,
        write_json: Callable[[bytes], None] | None = None,
        json_every_s: float = 2.0,
        run_id: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}; valid: {', '.join(MODES)}")
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "lines"
        self.mode = mode
        self.interval_s = interval_s
        self.write_json = write_json
        self.json_every_s = json_every_s
        self.run_id = run_id
        self.clock = clock
        self.counts = Counts()
        self.started: float | None = None
        self.work_started: float | None = None  # earliest start of a finished shard's work
        self.stopped: float | None = None  # when finish() was called: the numbers hold still after
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_json = float("-inf")
        self._writer: threading.Thread | None = None
        self._drawn = False

    # -- what the driver reports ------------------------------------------------------

    def start(self, todo_bytes: list[int], carried: int = 0, reused: int = 0) -> None:
        """The plan: the source sizes of the shards to embed, and what needs no work."""
        with self._lock:
            c = self.counts
            c.shards_total, c.bytes_total = len(todo_bytes), sum(todo_bytes)
            c.carried, c.reused = carried, reused
            self.started = self.clock()
        self._save("running", force=True)
        if self.mode in ("bar", "lines") and c.shards_total:
            every = 0.5 if self.mode == "bar" else self.interval_s
            self._thread = threading.Thread(target=self._refresh, args=(every,), daemon=True)
            self._thread.start()

    def rows_done(self, rows: int, tokens: int) -> None:
        """Rows and tokens a worker finished inside a shard that is still running."""
        with self._lock:
            self.counts.partial_rows += rows
            self.counts.partial_tokens += tokens

    def shard_done(
        self, rows: int, rejected: int, tokens: int, source_bytes: int, seconds: float = 0.0, partial_rows: int = 0
    ) -> None:
        """A shard finished after `seconds` of work on it; `partial_rows` it reported earlier are folded in."""
        with self._lock:
            c = self.counts
            now = self.clock()
            # When work began: start-up (Ray, actors, model load) is not embedding time.
            began = now - seconds if seconds > 0 else now
            self.work_started = began if self.work_started is None else min(self.work_started, began)
            c.shards_done += 1
            c.rows += rows
            c.rejected += rejected
            c.tokens += tokens
            c.bytes_done += source_bytes
            c.partial_rows = max(0, c.partial_rows - partial_rows)
            if c.shards_done == c.shards_total:
                c.partial_rows = c.partial_tokens = 0
        self._save("running")

    def finish(self, state: str = "done") -> None:
        """Stop drawing; the last state goes to progress.json (done, failed, interrupted)."""
        self.stopped = self.clock()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.mode == "bar" and self._drawn:
            self._draw(final=True)
        elif self.mode == "lines" and self.counts.shards_total and (state == "done" or self.counts.shards_done):
            self.stream.write(self.line() + "\n")
            self.stream.flush()
        self._save(state, force=True)

    # -- derived numbers ----------------------------------------------------------------

    def _now(self) -> float:
        return self.stopped if self.stopped is not None else self.clock()

    def elapsed(self) -> float:
        return 0.0 if self.started is None else max(0.0, self._now() - self.started)

    def tokens_per_s(self) -> float:
        """Tokens per second of embedding work: since the first finished shard began."""
        if self.work_started is None:
            return 0.0
        working = self._now() - self.work_started
        tokens = self.counts.tokens + self.counts.partial_tokens
        return tokens / working if working > 0 else 0.0

    def eta_s(self) -> float | None:
        c = self.counts
        if c.shards_done >= c.shards_total:
            return 0.0
        rate = self.tokens_per_s()
        if c.bytes_done <= 0 or c.tokens <= 0 or rate <= 0:
            return None
        tokens_per_byte = c.tokens / c.bytes_done
        remaining_tokens = max(0.0, (c.bytes_total - c.bytes_done) * tokens_per_byte - c.partial_tokens)
        return remaining_tokens / rate

    def snapshot(self, state: str) -> dict[str, Any]:
        c = self.counts
        eta = self.eta_s()
        return {
            "run_id": self.run_id,
            "state": state,
            "shards": {
                "to_embed": c.shards_total,
                "done": c.shards_done,
                "carried": c.carried,
                "reused": c.reused,
            },
            "rows": c.rows + c.partial_rows,
            "rejected": c.rejected,
            "tokens": c.tokens + c.partial_tokens,
            "bytes_done": c.bytes_done,
            "bytes_total": c.bytes_total,
            "elapsed_s": round(self.elapsed(), 1),
            "tokens_per_s": round(self.tokens_per_s(), 1),
            "eta_s": None if eta is None else round(eta, 1),
            "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def line(self) -> str:
        """One line: shards done/total, rows, tokens/s, elapsed and ETA."""
        c = self.counts
        if c.shards_done == 0 and c.partial_rows == 0:
            return (
                f"0/{c.shards_total} shards  {_clock(self.elapsed())} elapsed  "
                "(starting: cluster, actors and model load; the first shard is running)"
            )
        return (
            f"{c.shards_done}/{c.shards_total} shards  {_human(c.rows + c.partial_rows)} rows  "
            f"{_human(self.tokens_per_s())} tokens/s  {_clock(self.elapsed())} elapsed  ETA {_clock(self.eta_s())}"
        )

    def bar(self) -> str:
        c = self.counts
        done = c.bytes_done / c.bytes_total if c.bytes_total else (1.0 if c.shards_done else 0.0)
        filled = int(round(done * BAR_WIDTH))
        return f"embedding {done:4.0%} |{'#' * filled}{'.' * (BAR_WIDTH - filled)}| {self.line()}"

    # -- drawing ------------------------------------------------------------------------

    def _refresh(self, every: float) -> None:
        while not self._stop.wait(every):
            if self.mode == "bar":
                self._draw()
            else:
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def _draw(self, final: bool = False) -> None:
        with self._lock:
            text = self.bar()
        self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        self.stream.flush()
        self._drawn = True

    def _save(self, state: str, force: bool = False) -> None:
        """Write progress.json in a thread of its own: the driver never waits on the store for
        it. A write still running (a store that stopped answering) means the next is skipped."""
        if self.write_json is None:
            return
        now = self.clock()
        if not force and now - self._last_json < self.json_every_s:
            return
        if self._writer is not None and self._writer.is_alive():
            if not force:
                return
            self._writer.join(timeout=JSON_WAIT_S)  # the last state goes after the one being written
            if self._writer.is_alive():
                return
        self._last_json = now
        with self._lock:
            blob = json.dumps(self.snapshot(state), indent=1).encode()
        self._writer = threading.Thread(target=self._write_json, args=(blob,), name="e5ray-progress", daemon=True)
        self._writer.start()
        if force:  # the first and the last state: wait for it, a while
            self._writer.join(timeout=JSON_WAIT_S)

    def _write_json(self, blob: bytes) -> None:
        try:
            if self.write_json is not None:
                self.write_json(blob)
        except Exception:  # progress is advisory: never fail a run for it; after one failure, stop trying
            self.write_json = None
