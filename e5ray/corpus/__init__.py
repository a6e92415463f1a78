"""The corpus: finding source shards and reading them (Parquet, JSONL, JSON arrays, gzip),
cutting them into work units, and the row rules that decide what can be embedded.

May import: `e5ray.store`, `e5ray.errors`.
"""
