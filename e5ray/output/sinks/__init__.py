"""Output sinks: how embedding shards are written (see `e5ray.output.sinks.base`)."""
