"""Progress lines, bar, ETA and progress.json; the human and JSON summaries."""

from __future__ import annotations

import io
import json

import pytest

from e5ray.cli.summary import human_summary, json_summary
from e5ray.job.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(mode: str = "lines", **kwargs):
    clock = FakeClock()
    stream = io.StringIO()
    written: list[dict] = []
    progress = Progress(
        mode, stream, interval_s=3600, write_json=lambda b: written.append(json.loads(b)), clock=clock, **kwargs
    )
    return progress, clock, stream, written


def test_eta_is_remaining_bytes_times_measured_tokens_per_byte_over_tokens_per_s():
    progress, clock, _, _ = make()
    progress.start([1000, 1000, 2000], carried=2, reused=1)
    assert progress.eta_s() is None  # nothing measured yet
    clock.now += 30  # start-up: not embedding time
    clock.now += 10
    progress.shard_done(rows=50, rejected=1, tokens=500, source_bytes=1000, seconds=10)
    # 0.5 tokens per source byte; 3000 bytes left -> 1500 tokens at 500 tokens / 10 s of work
    assert progress.tokens_per_s() == pytest.approx(50.0)
    assert progress.eta_s() == pytest.approx(30.0)
    progress.finish()


def test_lines_mode_writes_a_line_with_shards_rows_rate_and_eta(monkeypatch):
    progress, clock, stream, _ = make()
    progress.start([100, 100])
    assert "starting" in progress.line()
    clock.now += 4
    progress.shard_done(rows=1200, rejected=0, tokens=4000, source_bytes=100, seconds=2)
    line = progress.line()
    assert line.startswith("1/2 shards  1.2k rows  2.0k tokens/s")
    assert "ETA 00:02" in line
    progress.finish()
    assert stream.getvalue().splitlines()[-1].startswith("1/2 shards")


def test_bar_mode_redraws_one_line_and_ends_it():
    progress, clock, stream, _ = make("bar")
    progress.start([100, 300])
    clock.now += 1
    progress.shard_done(rows=10, rejected=0, tokens=100, source_bytes=100, seconds=1)
    progress._draw()
    assert "embedding  25% |######" in stream.getvalue()
    progress.finish()
    assert stream.getvalue().startswith("\r\x1b[2K") and stream.getvalue().endswith("\n")


def test_progress_json_follows_the_run_and_records_its_end_state():
    progress, clock, _, written = make(json_every_s=0)
    progress.start([10, 10], carried=3)
    assert written[-1]["state"] == "running" and written[-1]["shards"]["carried"] == 3
    clock.now += 1
    progress.shard_done(rows=5, rejected=2, tokens=50, source_bytes=10, seconds=1)
    assert written[-1]["shards"]["done"] == 1 and written[-1]["rows"] == 5 and written[-1]["rejected"] == 2
    progress.finish("interrupted")
    assert written[-1]["state"] == "interrupted"


def test_a_failing_progress_file_never_fails_the_run():
    def broken(_: bytes) -> None:
        raise OSError("read-only")

    progress = Progress("off", io.StringIO(), write_json=broken)
    progress.start([1])
    progress.shard_done(1, 0, 1, 1)
    progress.finish()


MANIFEST = {
    "version": 3,
    "space": {"model": "demo", "dim": 32, "prefix": "passage", "max_length": 512},
    "totals": {"shards": 4, "input_rows": 333, "embedded": 330, "rejected": 3, "truncated": 2, "tokens": 100},
    "changes": {"counts": {"added": 1, "changed": 1, "removed": 0, "unchanged": 2}},
    "run": {
        "embedded_shards": 2,
        "reused_shards": 0,
        "carried_shards": 2,
        "tokens": 100,
        "tokens_per_s": 50.0,
        "seconds": 2.0,
    },
    "shards": [
        {"rejects": {"path": "rejects/a.rejects.jsonl"}},
        {"rejects": None},
    ],
}


def test_human_summary_names_the_counts_speed_version_output_and_rejects():
    text = human_summary(MANIFEST, "/data/out/", 12.34, working_rate=400.0)
    assert "done in 12.3 s: manifest version 3 (/data/out/manifest.json)" in text
    assert "330 embedded, 3 rejected, 2 truncated (of 333 input rows in 4 shards)" in text
    assert "100 tokens: 400 tokens/s while embedding, 50 tokens/s over the whole step" in text
    assert "/data/out/rejects/a.rejects.jsonl" in text
    assert len(text.splitlines()) <= 12  # one screen
    with_duplicates = {**MANIFEST, "totals": {**MANIFEST["totals"], "duplicates": 2}}
    assert "3 rejected (2 as ids of earlier shards), 2 truncated" in human_summary(with_duplicates, "/data/out", 1.0)


def test_json_summary_is_one_line_of_the_totals():
    line = json.dumps(json_summary(MANIFEST))
    assert "\n" not in line and json.loads(line)["totals"]["embedded"] == 330
