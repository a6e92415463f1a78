"""Benchmark tooling behind `jobs/benchmark.py` and `python -m e5ray.bench`; not part of the embedding library.

`jobs/benchmark.py` (a Ray job) compares, on the same texts and cores,

1. plain fastembed as a user calls it (`TextEmbedding(...).embed(texts)`, defaults),
2. e5ray's `E5Embedder` in this process,
3. the whole e5ray job (Parquet shards -> `run_job(executor="ray")` -> shards + manifest),
4. the ceiling: the tokens/s that onnxruntime's measured MatMul FLOP/s on these cores allows,

on a synthetic corpus whose lengths look like real documents, with a random-weight encoder of
a real E5 shape or the user's own export (`BenchConfig.model_path`). Tokens/s are real tokens
per second of wall time, so they compare across contestants even when one embeds fewer docs.

Modules: `config` (what to run), `model`, `corpus`, `ceiling` (FLOP formulas, MatMul speed),
`monitor` (process-tree RSS and CPU), `contestants` and `sweep` (the stages), `stages` (one
stage per process; `python -m e5ray.bench --stage` is the stage process), `cpu` and `gpu` (the
two benchmarks), `metrics`, `summary`, `report`, `run` (`run_benchmark`). The machinery of
the other benchmarks: `driver` and `steps`, `manifest`, `refresh`, `fusion_counts`,
`gpu_throughput` and `feed`.

`python -m e5ray.bench <subcommand>` (`__main__`, `--help` lists them) runs the other
benchmarks: `commands` holds one module per subcommand that runs without Ray, `cluster` the
`scale` subcommand, which runs the job on Ray in its own process.

Invariant: nothing here imports ray but `e5ray.bench.cluster`, which nothing else here
imports (the dispatcher loads it by name when `scale` runs). The job stage calls the
library's `run_job`, whose Ray executor starts and joins Ray; a test parses these modules'
imports to keep it so.
Needs the `bench` extra (`pip install "e5ray[bench]"`): onnx for the models and the ceiling.
"""
