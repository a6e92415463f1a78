"""The subcommands of `python -m e5ray.bench` that run without Ray, one module each.

Each module parses its own options and exposes `main(argv) -> int`; the machinery it drives
lives beside it in `e5ray.bench` (`driver`, `manifest`, `refresh`, `fusion_counts`,
`gpu_throughput`, ...). `support` holds what the S3-backed ones share. Invariant: nothing
here imports Ray (the Ray-using subcommands are `e5ray.bench.cluster`).
"""
