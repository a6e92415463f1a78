"""Quality: retrieval evaluation (eval, its data, metrics and chart), comparing two
outputs' vectors, and searching an output.

May import: `e5ray.job` and everything below it (not the CLI).
"""
