"""`e5ray verify --on-ray`: the same checks as in threads, run as Ray tasks across the cluster."""

from __future__ import annotations

from corpus_utils import write_corpus
from output_utils import embed_output, shard_file

from e5ray.executors.ray import map_on_ray
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir


def test_verify_on_ray_finds_what_the_threads_find_on_a_sound_and_on_a_tampered_output(
    tmp_path, bert_model_dir, local_ray
):
    write_corpus(tmp_path / "in", shards=3, rows=12)
    out = tmp_path / "out"
    manifest = embed_output(tmp_path / "in", out, bert_model_dir)
    output = OutputDir(str(out))
    assert verify_output(output, mapper=map_on_ray) == [] == verify_output(output)

    first, second = (shard_file(s) for s in manifest["shards"][:2])
    data = bytearray((out / first).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only reading the file finds it
    (out / first).write_bytes(bytes(data))
    (out / second).unlink()
    on_ray, in_threads = verify_output(output, mapper=map_on_ray), verify_output(output)
    assert on_ray == in_threads
    assert any(first in p and "sha256" in p for p in on_ray)
    assert any(second in p and "missing" in p for p in on_ray)


def test_map_on_ray_runs_its_function_in_ray_workers_and_keeps_the_input_order(local_ray):
    import os

    assert map_on_ray(lambda x: x * x, list(range(40)), per_task=7) == [x * x for x in range(40)]
    assert os.getpid() not in set(map_on_ray(lambda _: os.getpid(), list(range(4)), per_task=1))
    assert map_on_ray(lambda x: x, []) == []
