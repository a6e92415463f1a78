"""A text that already carries an E5 prefix is not prefixed twice."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from e5ray import E5Embedder
from e5ray.model.prefixes import strip_e5_prefixes


@pytest.fixture
def embedder(bert_model_dir):
    return E5Embedder(model="tiny-test", model_path=bert_model_dir, threads=1)


def prefix_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "already start with" in r.getMessage()]


def test_a_query_that_carries_its_prefix_is_embedded_once_prefixed_with_one_warning(embedder, caplog):
    with caplog.at_level(logging.WARNING, logger="e5ray"):
        plain = embedder.embed_queries(["how tall is the tower", "the a of"])
        assert prefix_warnings(caplog) == []
        carried = embedder.embed_queries(["query: how tall is the tower", "the a of"])
        again = embedder.embed_queries(["query: the a of"])
    np.testing.assert_array_equal(carried, plain)
    np.testing.assert_array_equal(again[0], plain[1])
    assert len(prefix_warnings(caplog)) == 1  # once per embedder, not once per text
    assert "query: how tall" in prefix_warnings(caplog)[0].getMessage()
    tokens = embedder.tokenize(["query: x y"], "query").ids[0]
    assert embedder.tokenizer.decode(tokens).count("query") == 1


def test_the_wrong_prefix_is_replaced_by_the_requested_one(embedder):
    np.testing.assert_array_equal(
        embedder.embed_queries(["passage: the library opens at nine"]),
        embedder.embed_queries(["the library opens at nine"]),
    )
    np.testing.assert_array_equal(
        embedder.embed_passages(["query: the library opens at nine"]),
        embedder.embed_passages(["the library opens at nine"]),
    )


def test_raw_texts_keep_what_they_carry(embedder, caplog):
    with caplog.at_level(logging.WARNING, logger="e5ray"):
        raw = embedder.embed_raw(["query: the tower"])
    np.testing.assert_array_equal(raw, embedder.embed_queries(["the tower"]))
    assert prefix_warnings(caplog) == []


def test_only_the_exact_leading_prefix_is_stripped():
    texts = ["query: a", "passage: b", "Query: c", " query: d", "a query: e", "query:f", "query: query: g"]
    bodies, cut = strip_e5_prefixes(texts)
    assert bodies == ["a", "b", "Query: c", " query: d", "a query: e", "query:f", "g"]
    assert cut == [7, 9, 0, 0, 0, 0, 14]
