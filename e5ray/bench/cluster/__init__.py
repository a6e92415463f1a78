"""The `scale` subcommand of `python -m e5ray.bench`: the job on Ray, at scale, the one bench group that imports Ray.

Its measurements need Ray in the benchmark's own process: a local Ray of 2 CPUs started
with a temp dir of its own (`small_files`, `job_vs_embedder`), a simulated cluster of
one-CPU nodes (`big_file`), the executor's actor swapped for a timed one (`timeline`), or
Ray's own timeline read after a run (`startup`, in its child process). So these modules may
import Ray, at their top; nothing else in `e5ray.bench` imports them (the dispatcher,
`e5ray.bench.__main__`, imports `scale` by name only when it runs), and this package's
`__init__` imports nothing, so `python -m e5ray.bench --help` and the other subcommands never
load Ray. tests/bench/test_benchmark.py holds the list of modules allowed to.

Modules: `scale` (the command line), `small_files` (also the corpus and job helpers the
others use; it runs alone against another checkout's e5ray), `big_file`, `timeline`,
`job_vs_embedder`, `startup`.
"""
