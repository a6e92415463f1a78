"""The model: which E5 model (catalog), where its files come from (resolve, stage), what
space its vectors live in (space, describe), and the embedder that turns texts into
L2-normalised mean-pooled vectors (embedder, embed_io, session, batching, pooling, windows),
with precision, graph fusion and the versions of the libraries that can move vectors.

Runs wherever the model is, and decides nothing about runs or outputs.
May import: `e5ray.store`, `e5ray.errors`.
"""
