"""`python -m e5ray.bench driver` at a tiny size (50 units), so the driver-cost benchmark cannot rot.

It runs the subcommand as a user does (its own SeaweedFS, the demo model) and checks what the
benchmark exists to show: planning, resume and refresh make a constant number of listing
and HEAD requests whatever the unit count, a resume reads the driver's checkpoints (one GET
per `--checkpoint-every` units) and the markers of units finished after the last one, and no
output file, and verify --quick reads no output either.
"""

from __future__ import annotations

import json

import pytest
from bench_utils import REPO, run_bench

try:
    from .s3server import require_weed
except ImportError:
    from s3server import require_weed

UNITS = 50  # 30 one-row files + 2 files of 10 row groups
KILL_AFTER = 20
CHECKPOINT_EVERY = 10  # units per driver checkpoint (e5ray.job.checkpoints)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_weed()
    pytest.importorskip("onnx")
    out = tmp_path_factory.mktemp("bench-driver") / "driver.json"
    args = ["--small-files", "30", "--split-files", "2", "--row-groups", "10", "--kill-after", str(KILL_AFTER)]
    args += ["--threads", "2", "--scale-manifest-to", "200", "--checkpoint-every", str(CHECKPOINT_EVERY)]
    args += ["--json-out", str(out)]
    run_bench(
        "driver",
        args,
        cwd=REPO,
        timeout=400,
        drop_env=("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"),
    )
    result: dict = json.loads(out.read_text())
    return result


def _count(phase: dict, what: str) -> int:
    return int(phase["requests_by_folder"].get(what, 0))


def test_the_corpus_yields_the_units_asked_for_and_a_fresh_plan_embeds_them_all(bench: dict) -> None:
    assert bench["units"] == UNITS
    plan = bench["phases"]["a-fresh-plan"]
    assert (plan["units_split"], plan["todo"], plan["reused"]) == (UNITS, UNITS, 0)
    # Footers of the 2 split files, the preflight's column check, and one sized GET per source
    # to peek its id type (e5ray.job.precommit: every source up to 256, then one per format).
    assert _count(plan, "GET input") <= 2 + 1 + 32
    # HEADs: the 2 split files' footers and the preflight's check, none for the 32 peeks (sized
    # from the listing; before they were, the plan made 42).
    assert _count(plan, "HEAD input") <= 4
    assert not any(k.split()[1] in ("shards", "markers") for k in plan["requests_by_folder"] if k.startswith("GET"))


def test_resume_planning_reads_checkpoints_and_only_the_markers_after_the_last_one_and_no_output(
    bench: dict,
) -> None:
    assert bench["phases"]["job-killed"]["killed_after_units"] == KILL_AFTER
    plan = bench["phases"]["b-resume-plan"]
    assert plan["reused"] >= KILL_AFTER  # units in flight at the kill may finish too
    assert plan["reused"] + plan["todo"] == UNITS
    # The killed driver wrote no final checkpoint; the 20 units it received fill 2 of 10 each
    # (a slow run may add time-based ones, never covering fewer). Units in flight at the
    # kill have only their markers.
    checkpoints = plan["checkpoints_read"]
    assert checkpoints >= KILL_AFTER // CHECKPOINT_EVERY
    markers = _count(plan, "GET markers") - checkpoints
    assert markers <= plan["reused"] - KILL_AFTER + CHECKPOINT_EVERY - 1 and markers < plan["reused"]
    assert _count(plan, "HEAD markers") <= 1  # one GET per marker, no HEAD before it
    assert plan["get_bytes_by_folder"].get("shards", 0) == 0
    # Listings and HEADs do not grow with the units (about 1 LIST page per 1,000 objects).
    assert plan["requests"].get("LIST", 0) + plan["requests"].get("HEAD", 0) < 30


def test_a_refresh_with_nothing_changed_carries_every_unit_and_reads_no_marker_nor_output(bench: dict) -> None:
    plan = bench["phases"]["c-refresh-plan"]
    assert (plan["carried"], plan["todo"]) == (UNITS, 0)
    for folder in ("markers", "shards", "rejects"):
        assert _count(plan, f"GET {folder}") == 0
    # Nothing to embed, so no marker is looked for: markers/ is not even listed (the carried
    # files' own folders are listed once, to see that they are still there).
    assert _count(plan, "LIST markers") == 0 and _count(plan, "LIST rejects") == 0


def test_verify_quick_reads_no_output_and_full_verify_reads_every_file_once(bench: dict) -> None:
    quick, full = bench["phases"]["d-verify-quick"], bench["phases"]["d-verify-full"]
    assert quick["problems"] == [] and full["problems"] == []
    assert _count(quick, "GET shards") == 0
    # One open per file serves its sha256 and the sink's checks: one GET (the files are small), no HEAD.
    assert _count(full, "GET shards") == UNITS and _count(full, "GET ids") == UNITS
    assert _count(full, "HEAD shards") <= 1 and _count(full, "HEAD ids") <= 1


def test_the_manifest_figures_are_measured_on_the_committed_manifest(bench: dict) -> None:
    manifest = bench["manifest"]
    assert manifest["entries"] == UNITS
    assert 200 < manifest["bytes_per_entry"] < manifest["bytes"] / UNITS + 1
    assert manifest["scaled_entries"] == 200 and manifest["scaled_bytes"] > 3 * manifest["bytes"]
