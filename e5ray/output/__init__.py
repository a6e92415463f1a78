"""The output: its layout (the contract other tools read), manifests and their schema,
create-only versions, the sinks that write embedding files, listing, reading, verifying,
exporting and collecting garbage, the cross-shard duplicate-id check, and the content hash
that every output row carries (what row-level refresh looks rows up by).

May import: `e5ray.corpus`, `e5ray.model`, `e5ray.store`, `e5ray.errors`.
"""
