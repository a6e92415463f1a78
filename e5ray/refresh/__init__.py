"""Row-level refresh: the per-version reuse index (content hash -> vector), and
preparing a run's reuse (which rows it can take from the previous version).

May import: `e5ray.output` and everything below it.
"""
