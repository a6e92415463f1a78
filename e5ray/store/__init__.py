"""Storage: filesystems and paths (local, S3 through s3fs), timeouts and bounded retries,
storage failures as one-line errors, leases on an output, temporary files, streamed uploads.

The bottom layer: it knows bytes, keys and deadlines, nothing of models, corpora or
manifests. May import: `e5ray.errors` only.
"""
