"""The floor of Ray's path to a first vector: a plain Ray actor against a Ray Data actor pool of one,
the same work (load the model in the actor, embed one text). BENCHMARKS.md, "Start-up on a quiet machine".

    PYTHONPATH=$PWD python bench-results/startup-floor-plain-vs-data.py plain|data MODEL_DIR

A fresh process each; Ray is started (or joined, when RAY_ADDRESS is set) as e5ray does (`ensure_ray`).
Prints one JSON line: seconds from the process's start to imports done, Ray ready, the first vector.
"""

import time

T0 = time.perf_counter()

import json  # noqa: E402  (imports are part of what is timed)
import sys  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import ray  # noqa: E402

from e5ray.executors.ray_start import ensure_ray  # noqa: E402


class Embed:
    """What an actor of either pool does: load the model once, embed a batch of texts."""

    def __init__(self, model: str) -> None:
        from e5ray.model.embedder import E5Embedder

        self.embedder = E5Embedder(model_path=model, threads=1)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"v": np.asarray(self.embedder.embed_passages(list(batch["text"])))}


def first_vector(variant: str, model: str) -> Any:
    if variant == "plain":
        actor = ray.remote(num_cpus=1)(Embed).remote(model)
        return ray.get(actor.__call__.remote({"text": np.array(["hello world"], dtype=object)}))["v"][0]
    dataset = ray.data.from_items([{"text": "hello world"}]).map_batches(
        Embed,
        fn_constructor_kwargs={"model": model},
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=1),
        num_cpus=1,
    )
    return next(iter(dataset.iter_rows()))["v"]


if __name__ == "__main__":
    variant, model = sys.argv[1], sys.argv[2]
    imports = time.perf_counter() - T0
    ensure_ray()
    ready = time.perf_counter() - T0
    vector = first_vector(variant, model)
    first = time.perf_counter() - T0
    print(
        json.dumps(
            {
                "variant": variant,
                "imports": round(imports, 2),
                "ray_ready": round(ready, 2),
                "first_vector": round(first, 2),
                "ray_to_first": round(first - ready, 2),
                "dim": len(vector),
            }
        )
    )
