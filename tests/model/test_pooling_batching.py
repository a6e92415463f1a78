import numpy as np
import pytest

from e5ray.model.batching import plan_batches
from e5ray.model.pooling import e5_pool, l2_normalize, mean_pool


def test_mean_pool_ignores_padding_positions():
    hidden = np.zeros((2, 3, 2), dtype=np.float32)
    hidden[0] = [[1, 1], [3, 5], [100, 100]]  # last position is padding
    hidden[1] = [[2, 0], [0, 2], [4, 4]]
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(mean_pool(hidden, mask), [[2, 3], [2, 2]])


def test_e5_pool_is_unit_norm_float32():
    rng = np.random.default_rng(0)
    out = e5_pool(rng.normal(size=(4, 5, 8)), np.ones((4, 5), dtype=np.int64))
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)


def test_mean_pool_rejects_rows_without_tokens():
    with pytest.raises(ValueError, match="no real tokens"):
        mean_pool(np.ones((1, 2, 3)), np.zeros((1, 2)))


def test_l2_normalize_leaves_zero_rows_finite():
    out = l2_normalize(np.zeros((1, 3), dtype=np.float32))
    assert np.all(np.isfinite(out))


def test_batches_cover_every_row_once_and_respect_budget():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 300, size=500)
    batches = plan_batches(lengths, token_budget=1024, max_rows=64)
    seen = np.concatenate([b.indices for b in batches])
    assert sorted(seen.tolist()) == list(range(500))
    for b in batches:
        assert b.seq_len == lengths[b.indices].max()
        assert len(b.indices) <= 64
        assert b.padded_tokens <= 1024 or len(b.indices) == 1


def test_sorted_batches_waste_little_padding():
    rng = np.random.default_rng(2)
    lengths = np.clip(rng.lognormal(np.log(40), 0.8, size=2000).astype(int), 3, 512)
    batches = plan_batches(lengths, token_budget=2048, max_rows=128)
    padded = sum(b.padded_tokens for b in batches)
    assert (padded - lengths.sum()) / padded < 0.10


def test_oversized_row_gets_its_own_batch():
    batches = plan_batches([5, 600, 7], token_budget=100)
    assert [len(b.indices) for b in batches] == [2, 1]
    assert batches[-1].seq_len == 600


@pytest.mark.parametrize("budget,rows", [(0, 10), (10, 0)])
def test_plan_batches_validates_arguments(budget, rows):
    with pytest.raises(ValueError):
        plan_batches([1, 2], token_budget=budget, max_rows=rows)
