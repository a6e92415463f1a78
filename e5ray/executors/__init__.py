"""Executors: where a run's tasks are embedded. `base` is the seam (a name -> executor table);
`local` runs workers in this process, `ray` in a Ray actor pool (`ray_start` starts or joins
the cluster, `ray_auth` takes token mode from the cluster joined, `ray_exit` ends it, `watchdog` bounds the
wait on a cluster that stops answering); `pool` and `capacity` size and group the work for the pool.

The only package that imports Ray. May import: `e5ray.worker`, `e5ray.config` and
everything below them.
"""
