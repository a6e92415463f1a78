"""The job: the driver. It plans a run (sources, units, what is carried, resumed or reused),
hands tasks to an executor, checkpoints what finished, checks the new version (duplicate
ids, presence) and commits it; plus the dry-run preview and progress reporting.

`e5ray.job.run.run_job` is the entry point. May import: `e5ray.executors`, `e5ray.worker`
(tasks and results, as data) and everything below them; never Ray directly.
"""
