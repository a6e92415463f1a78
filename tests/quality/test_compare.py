"""`e5ray compare`: per-id cosine, neighbour overlap and rank correlation between two outputs."""

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from records import SPACE, entry, manifest

from e5ray.cli.app import main
from e5ray.quality.compare import compare_outputs, spearman


def write_output(root, ids, vectors, shards=1, windows=None):
    """An e5ray output written by hand: Parquet shards (id, fixed-size embedding) + manifest.json."""
    (root / "shards").mkdir(parents=True)
    vectors = np.asarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    entries = []
    for n, rows in enumerate(np.array_split(np.arange(len(ids)), shards)):
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors[rows].reshape(-1)), dim)
        columns = {"id": [ids[i] for i in rows], "embedding": embedding}
        if windows is not None:  # chunk mode: one row per window, with its spans
            for name in ("window", "token_start", "token_end", "char_start", "char_end"):
                columns[name] = pa.array([windows[i] for i in rows], pa.int32())
        entries.append(entry(f"part-{n}", rows=len(rows)))
        pq.write_table(pa.table(columns), root / entries[-1].files[0].path)
    chunked = {"long_text": "chunk", "stride": 8} if windows is not None else {}
    space = dataclasses.replace(SPACE, dim=dim, **chunked)
    (root / "manifest.json").write_text(json.dumps(dataclasses.replace(manifest(*entries), space=space).to_dict()))
    return str(root)


def unit(rows):
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(old, new, k):
    """Expected overlap@k and Spearman per id, computed directly over all ids."""
    s_old, s_new = old @ old.T, new @ new.T
    np.fill_diagonal(s_old, -np.inf)
    np.fill_diagonal(s_new, -np.inf)
    overlaps, rhos = [], []
    for i in range(len(old)):
        a = np.argsort(-s_old[i])[:k]
        b = np.argsort(-s_new[i])[:k]
        overlaps.append(len(set(a) & set(b)) / k)
        x, y = s_old[i, a], s_new[i, a]
        rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))  # no ties in random data
        rhos.append(np.corrcoef(rx, ry)[0, 1])
    return np.array(overlaps), np.array(rhos)


@pytest.fixture
def vectors():
    return unit(np.random.default_rng(0).normal(size=(200, 16)))


def test_identical_outputs_have_cosine_one_and_identical_neighbourhoods(tmp_path, vectors):
    ids = [f"doc-{i}" for i in range(200)]
    old = write_output(tmp_path / "old", ids, vectors, shards=3)
    new = write_output(tmp_path / "new", ids, vectors, shards=2)
    report = compare_outputs(old, new, sample=50, k=10)
    assert report["ids"]["common"] == 200 and report["ids"]["only_old"] == report["ids"]["only_new"] == 0
    assert report["cosine"]["min"] == pytest.approx(1.0) and report["cosine"]["count"] == 200
    assert report["neighbours"]["sample"] == 50
    assert report["neighbours"]["overlap@10"]["min"] == 1.0
    assert report["neighbours"]["spearman"]["min"] == pytest.approx(1.0)
    assert report["space_differences"] == {}


def test_a_rotation_moves_every_vector_by_its_angle_but_keeps_every_neighbourhood(tmp_path, vectors):
    half = vectors[:, :8] / np.linalg.norm(vectors[:, :8], axis=1, keepdims=True)
    theta = 0.7
    old_vectors = np.hstack([half, np.zeros_like(half)])
    new_vectors = np.hstack([np.cos(theta) * half, np.sin(theta) * half])  # an isometry
    ids = list(range(200))
    order = np.random.default_rng(1).permutation(200)  # NEW stores the rows in another order
    old = write_output(tmp_path / "old", ids, old_vectors, shards=4)
    new = write_output(tmp_path / "new", [ids[i] for i in order], new_vectors[order], shards=3)
    report = compare_outputs(old, new, sample=1000, k=10)
    for name in ("min", "p1", "p5", "median", "mean"):
        assert report["cosine"][name] == pytest.approx(np.cos(theta), abs=1e-6)
    assert report["neighbours"]["sample"] == 200
    assert report["neighbours"]["overlap@10"]["mean"] == 1.0
    assert report["neighbours"]["spearman"]["mean"] == pytest.approx(1.0)


def test_a_perturbed_output_matches_a_brute_force_computation(tmp_path, vectors):
    noisy = unit(vectors + np.random.default_rng(2).normal(scale=0.1, size=vectors.shape))
    ids = [f"d{i}" for i in range(200)]
    report = compare_outputs(
        write_output(tmp_path / "old", ids, vectors, shards=2),
        write_output(tmp_path / "new", ids, noisy, shards=5),
        sample=1000,
        k=10,
        batch_rows=37,  # many batches: the running top k must merge them correctly
    )
    cosines = (vectors * noisy).sum(axis=1)
    assert report["cosine"]["min"] == pytest.approx(cosines.min(), abs=1e-6)
    assert report["cosine"]["median"] == pytest.approx(np.median(cosines), abs=1e-6)
    assert report["cosine"]["mean"] == pytest.approx(cosines.mean(), abs=1e-6)
    assert report["cosine"]["worst"][0] == {"id": ids[int(cosines.argmin())], "cosine": pytest.approx(cosines.min())}
    overlaps, rhos = brute_force(vectors, noisy, 10)
    assert report["neighbours"]["overlap@10"]["mean"] == pytest.approx(overlaps.mean())
    assert report["neighbours"]["spearman"]["mean"] == pytest.approx(rhos.mean(), abs=1e-6)
    assert 0.2 < overlaps.mean() < 0.95  # the noise moved neighbourhoods, but not all of them


def test_ids_in_one_output_only_and_duplicates_are_counted_and_swapped_ids_are_the_worst(tmp_path, vectors):
    old_ids = list(range(0, 150))
    new_ids = list(range(20, 180))  # 130 shared, 20 only in OLD, 30 only in NEW
    new_vectors = vectors[20:180].copy()
    new_vectors[[0, 1]] = new_vectors[[1, 0]]  # ids 20 and 21 swapped their vectors
    old = write_output(tmp_path / "old", old_ids + [5], np.vstack([vectors[:150], vectors[5:6]]))
    new = write_output(tmp_path / "new", new_ids, new_vectors)
    report = compare_outputs(old, new, sample=10, worst=2)
    ids = report["ids"]
    assert (ids["common"], ids["only_old"], ids["only_new"], ids["duplicates_old"]) == (130, 20, 30, 1)
    assert {w["id"] for w in report["cosine"]["worst"]} == {20, 21}
    assert report["cosine"]["count"] == 130


def test_the_bucketed_join_gives_the_same_report_as_the_in_memory_one(tmp_path, vectors):
    ids = [f"x{i}" for i in range(200)]
    noisy = unit(vectors + np.random.default_rng(3).normal(scale=0.2, size=vectors.shape))
    old = write_output(tmp_path / "old", ids, vectors, shards=2)
    new = write_output(tmp_path / "new", ids, noisy, shards=2)
    one = compare_outputs(old, new, sample=40, memory_mb=1024)
    many = compare_outputs(old, new, sample=40, memory_mb=0.005)
    assert one["memory"]["buckets"] == 1 and many["memory"]["buckets"] > 3
    assert many["ids"] == one["ids"] and many["neighbours"] == one["neighbours"]
    worst = many["cosine"].pop("worst")
    assert worst == one["cosine"].pop("worst")
    assert many["cosine"] == pytest.approx(one["cosine"])  # the mean sums in another order


def test_outputs_of_different_dims_skip_the_cosine_and_still_compare_neighbourhoods(tmp_path, vectors):
    basis, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(24, 16)))  # 16 -> 24 dims, isometric
    ids = list(range(200))
    report = compare_outputs(
        write_output(tmp_path / "old", ids, vectors), write_output(tmp_path / "new", ids, vectors @ basis.T)
    )
    assert report["cosine"] == {"dims_match": False, "old_dim": 16, "new_dim": 24}
    assert report["neighbours"]["overlap@10"]["mean"] == 1.0
    assert report["space_differences"]["dim"] == [16, 24]


def test_spearman_handles_ties_and_constant_lists():
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    # ranks with a tie: x -> [0, 1.5, 1.5, 3], y -> [0, 1, 2, 3]; Pearson of those ranks = 0.9486833
    assert spearman(np.array([1.0, 2.0, 2.0, 4.0]), np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(0.9486833)
    assert np.isnan(spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))


def test_compare_on_two_job_outputs_from_the_command_line(tmp_path, bert_model_dir, capsys):
    from pathlib import Path

    corpus = Path(__file__).resolve().parents[2] / "samples" / "corpus"
    common = ["--input", str(corpus), "--model", "t", "--model-path", str(bert_model_dir), "--executor", "local"]
    assert main(["embed", *common, "--output", str(tmp_path / "mean"), "--quiet"]) == 0
    assert main(["embed", *common, "--output", str(tmp_path / "cls"), "--pooling", "cls", "--quiet"]) == 0
    capsys.readouterr()
    out_json = tmp_path / "compare.json"
    code = main(
        ["compare", str(tmp_path / "cls"), str(tmp_path / "mean"), "--sample", "50", "--json-out", str(out_json)]
    )
    assert code == 0
    screen = capsys.readouterr().out
    assert "space differences: pooling 'cls' -> 'mean'" in screen and "overlap@10" in screen
    report = json.loads(out_json.read_text())
    assert report["ids"]["common"] == report["old"]["rows"] == report["new"]["rows"] > 300
    assert report["ids"]["only_old"] == report["ids"]["only_new"] == 0
    assert report["cosine"]["mean"] < 0.999  # CLS and mean pooling are other spaces
    assert report["neighbours"]["sample"] == 50


def test_chunk_outputs_are_compared_window_by_window(tmp_path, vectors):
    ids, windows = [1, 1, 1, 2, 3, 3], [0, 1, 2, 0, 0, 1]
    order = [5, 3, 0, 2, 4, 1]
    old = write_output(tmp_path / "old", ids, vectors[:6], windows=windows)
    new = write_output(tmp_path / "new", [ids[i] for i in order], vectors[order], windows=[windows[i] for i in order])
    report = compare_outputs(old, new, k=3)
    assert report["ids"]["key"] == "id+window"
    assert (report["ids"]["common"], report["ids"]["duplicates_old"]) == (6, 0)
    assert report["cosine"]["min"] == pytest.approx(1.0)
    assert report["neighbours"]["overlap@3"]["mean"] == 1.0
    flat = write_output(tmp_path / "flat", ids, vectors[:6])
    with pytest.raises(ValueError, match="one row per window"):
        compare_outputs(old, flat)
