"""Metric code against values worked out by hand on small rankings."""

import numpy as np
import pytest

from e5ray.quality.metrics import (
    METRICS,
    bootstrap_indices,
    interval,
    paired_bootstrap,
    per_query_metrics,
    top_k,
)

# Three queries over a pool of five passages (indices 0..4), plus one without relevant passages.
RANKING = np.array(
    [
        [3, 2, 0, 1, 4],  # q0: its one relevant passage (2) at rank 2
        [4, 1, 0, 2, 3],  # q1: graded, 0 -> 2 at rank 3, 4 -> 1 at rank 1, 1 judged 0 at rank 2
        [0, 2, 3, 4, 1],  # q2: its relevant passage (1) at rank 5
        [0, 1, 2, 3, 4],  # q3: nothing relevant
    ]
)
JUDGMENTS = [{2: 1.0}, {0: 2.0, 4: 1.0, 1: 0.0}, {1: 1.0}, {3: 0.0}]

# By hand (log2(2) = 1, log2(3) = 1.5849625, log2(4) = 2, log2(6) = 2.5849625):
# q0: DCG = 1/log2(3) = 0.6309298, ideal DCG = 1/log2(2) = 1          -> nDCG 0.6309298
# q1: DCG = 1/log2(2) + 0 + 2/log2(4) = 2, ideal = 2/1 + 1/log2(3) = 2.6309298 -> 0.7601875
# q2: DCG = 1/log2(6) = 0.3868528, ideal 1                            -> 0.3868528
EXPECTED = {
    "recall@1": [0.0, 0.5, 0.0, 0.0],
    "recall@5": [1.0, 1.0, 1.0, 0.0],
    "recall@10": [1.0, 1.0, 1.0, 0.0],
    "mrr@10": [0.5, 1.0, 0.2, 0.0],
    "ndcg@10": [0.6309298, 0.7601875, 0.3868528, 0.0],
}


def test_metrics_match_hand_computed_values_with_graded_relevance():
    values = per_query_metrics(RANKING, JUDGMENTS)
    assert tuple(values) == METRICS
    for name, expected in EXPECTED.items():
        np.testing.assert_allclose(values[name], expected, atol=1e-7, err_msg=name)


def test_ideal_ranking_scores_one_and_reversed_ideal_scores_less():
    judgments = [{0: 3.0, 1: 2.0, 2: 1.0}]
    ideal = per_query_metrics(np.array([[0, 1, 2, 3]]), judgments)
    assert ideal["ndcg@10"][0] == pytest.approx(1.0)
    # reversed: DCG = 1/1 + 2/log2(3) + 3/log2(4) = 1 + 1.2618595 + 1.5 = 3.7618595;
    # ideal = 3 + 2/log2(3) + 1/2 = 3 + 1.2618595 + 0.5 = 4.7618595 -> 0.7899980
    worst = per_query_metrics(np.array([[2, 1, 0, 3]]), judgments)
    assert worst["ndcg@10"][0] == pytest.approx(0.7899980, abs=1e-7)
    assert worst["recall@1"][0] == pytest.approx(1 / 3)


def test_a_relevant_passage_below_rank_ten_scores_zero_mrr_but_counts_for_nothing_else():
    ranking = np.arange(12)[None, :]
    values = per_query_metrics(ranking, [{11: 1.0}])
    assert values["mrr@10"][0] == 0.0 and values["recall@10"][0] == 0.0 and values["ndcg@10"][0] == 0.0


def test_top_k_breaks_score_ties_by_passage_index():
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.9], [0.3, 0.7, 0.7, 0.7, 0.0]])
    assert top_k(scores, 3).tolist() == [[1, 4, 0], [1, 2, 3]]
    # a tie straddling the cut: three passages share the 2nd-best score, the lowest indices win
    assert top_k(scores, 2).tolist() == [[1, 4], [1, 2]]


def test_top_k_matches_a_full_stable_sort_on_random_scores_with_ties():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 20, size=(600, 50)).astype(np.float32)  # many ties
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(top_k(scores, 10, chunk=128), expected)


def test_top_k_on_a_pool_smaller_than_k_returns_the_whole_pool():
    assert top_k(np.array([[0.1, 0.3]]), 10).tolist() == [[1, 0]]


def test_bootstrap_interval_contains_the_point_difference_and_repeats_for_a_seed():
    rng = np.random.default_rng(0)
    base = rng.random(300)
    other = np.clip(base + rng.normal(0.05, 0.1, size=300), 0, 1)
    indices = bootstrap_indices(300, 1000, seed=7)
    diff, low, high = paired_bootstrap(base, other, indices)
    assert diff == pytest.approx(float(np.mean(other - base)))
    assert low < diff < high
    assert paired_bootstrap(base, other, bootstrap_indices(300, 1000, seed=7)) == (diff, low, high)
    assert paired_bootstrap(base, other, bootstrap_indices(300, 1000, seed=8)) != (diff, low, high)


def test_pairing_makes_a_constant_improvement_certain_despite_noisy_queries():
    base = np.random.default_rng(1).random(200)  # queries differ a lot from each other
    diff, low, high = paired_bootstrap(base, base + 0.01, bootstrap_indices(200, 500, seed=0))
    assert diff == pytest.approx(0.01) and low == pytest.approx(0.01) and high == pytest.approx(0.01)
    # the unpaired interval of either variant alone is far wider than the difference
    lo, hi = interval(base, bootstrap_indices(200, 500, seed=0))
    assert hi - lo > 0.05


def test_bootstrap_rejects_unpaired_inputs_and_bad_confidence():
    indices = bootstrap_indices(3, 10)
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap(np.zeros(3), np.zeros(4), indices)
    with pytest.raises(ValueError, match="confidence"):
        interval(np.zeros(3), indices, confidence=1.5)
