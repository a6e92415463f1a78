"""`python -m e5ray.bench finish` at a tiny size against the suite's S3 server, so the benchmark of
plain against streamed finishing cannot rot: both paths store objects that hash to their names."""

from __future__ import annotations

import json

from bench_utils import run_bench


def test_bench_finish_times_both_paths_and_streams_a_unit_bigger_than_a_part(s3_server, s3_bucket, s3_env, tmp_path):
    out = tmp_path / "finish.json"
    # 6,000 rows x 256 dims: ~6.2 MB, over one 5 MiB part; 100 rows stay under it.
    args = ["--rows", "100", "6000", "--dim", "256", "--repeat", "1", "--actor-tokens-per-s", "1e9"]
    args += ["--part-bytes", str(5 * 2**20), "--endpoint", s3_server.endpoint_url, "--bucket", s3_bucket]
    run_bench("finish", [*args, "--json-out", str(out)], cwd=tmp_path, extra_env=s3_env)
    small, big = json.loads(out.read_text())["units"]
    assert small["streamed_sent_before_finish"] == [0]  # under one part: the one-PUT path
    assert big["bytes"] > 5 * 2**20
    assert big["plain_median_finish_s"] > 0 and big["streamed_median_finish_s"] > 0
