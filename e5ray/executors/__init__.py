"""Executors: where the shard tasks of a run are embedded (see `e5ray.executors.base`)."""
