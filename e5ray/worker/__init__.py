"""The worker: what runs where the model is. A task (`task.ShardTask`) comes in; the worker
reads its unit's rows, validates them, embeds them (alone, in shared batches with other
small units, or reusing rows of the previous version) and commits the unit's files and its
completion marker. It decides nothing about the run.

May import: `e5ray.config`, `e5ray.refresh` and everything below them; never Ray.
"""
