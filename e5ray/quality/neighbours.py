"""Neighbourhood agreement for `e5ray compare`: for each sampled common key, its k nearest
neighbours in OLD and in NEW, how many they share (overlap@k), and whether its OLD
neighbours keep their order in NEW (Spearman of their similarities in each space).

Invariants: neighbours are searched over each output's own rows, the key itself excluded;
each output is streamed once, batch by batch, holding only the sample's vectors and a
running top k per sampled key, so memory does not grow with the outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from e5ray.quality.id_join import Picked
from e5ray.quality.output_reader import OutputReader
from e5ray.quality.summaries import spearman, summarise


class RunningTopK:
    """Per sampled key, the k highest similarities seen so far and their keys."""

    def __init__(self, samples: np.ndarray, keys: list[Any], k: int) -> None:
        self.samples, self.k = samples, k
        self.position = {key: i for i, key in enumerate(keys)}
        self.scores = np.full((len(keys), k), -np.inf, dtype=np.float32)
        self.keys = np.full((len(keys), k), None, dtype=object)

    def offer(self, batch_keys: list[Any], vectors: np.ndarray) -> np.ndarray:
        sims: np.ndarray = self.samples @ vectors.T
        for j, key in enumerate(batch_keys):  # a key is not its own neighbour
            i = self.position.get(key)
            if i is not None:
                sims[i, j] = -np.inf
        take = min(self.k, sims.shape[1])
        idx = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        merged_scores = np.concatenate([self.scores, np.take_along_axis(sims, idx, axis=1)], axis=1)
        keys = np.empty(len(batch_keys), dtype=object)
        keys[:] = batch_keys
        merged_keys = np.concatenate([self.keys, keys[idx]], axis=1)
        order = np.argsort(-merged_scores, axis=1, kind="stable")[:, : self.k]
        self.scores = np.take_along_axis(merged_scores, order, axis=1)
        self.keys = np.take_along_axis(merged_keys, order, axis=1)
        return sims


def neighbour_agreement(
    old: OutputReader, new: OutputReader, picked: list[Picked], k: int, batch_rows: int, seed: int
) -> dict[str, Any]:
    """The report's "neighbours" section: overlap@k and Spearman over the sampled keys."""
    out: dict[str, Any] = {"sample": len(picked), "k": k, "seed": seed}
    if not picked:
        return out
    keys = [p[1] for p in picked]
    top_old = RunningTopK(np.stack([p[2] for p in picked]), keys, k)
    for batch_keys, vectors in old.batches(batch_rows):
        top_old.offer(batch_keys, vectors)
    top_new, old_in_new = _new_pass(new, picked, keys, top_old, batch_rows)
    overlaps, rhos = [], []
    for i in range(len(picked)):
        a = {key for key in top_old.keys[i] if key is not None}
        b = {key for key in top_new.keys[i] if key is not None}
        if a or b:
            overlaps.append(len(a & b) / max(len(a), len(b)))
        found = np.isfinite(old_in_new[i]) & np.isfinite(top_old.scores[i])
        rhos.append(spearman(top_old.scores[i][found], old_in_new[i][found]))
    out[f"overlap@{k}"] = summarise(np.array(overlaps), (5, 50))
    out["spearman"] = summarise(np.array(rhos), (5, 50))
    return out


def _new_pass(
    new: OutputReader, picked: list[Picked], keys: list[Any], top_old: RunningTopK, batch_rows: int
) -> tuple[RunningTopK, np.ndarray]:
    """The top k in NEW, and in the same pass the similarity in NEW of each sampled key's
    OLD neighbours (nan where a neighbour is not in NEW)."""
    wanted: dict[Any, list[tuple[int, int]]] = {}  # OLD neighbour -> (sampled key, slot) pairs
    for i, row in enumerate(top_old.keys):
        for slot, key in enumerate(row):
            if key is not None:
                wanted.setdefault(key, []).append((i, slot))
    old_in_new = np.full(top_old.scores.shape, np.nan)
    top_new = RunningTopK(np.stack([p[3] for p in picked]), keys, top_old.k)
    for batch_keys, vectors in new.batches(batch_rows):
        sims = top_new.offer(batch_keys, vectors)
        for j, key in enumerate(batch_keys):
            for i, slot in wanted.get(key, ()):
                old_in_new[i, slot] = sims[i, j]
    return top_new, old_in_new
