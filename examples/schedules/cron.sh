#!/usr/bin/env bash
# Scheduled corpus refresh with cron + `ray job submit`, then gc of old versions.
#
# crontab (nightly at 02:15; one log per host):
#   15 2 * * *  /opt/e5ray/examples/schedules/cron.sh >> /var/log/e5ray-refresh.log 2>&1
#
# The refresh runs on the Ray cluster (the nodes need e5ray's dependencies and S3
# credentials, e.g. an instance role); this host only needs the `ray` CLI and a checkout
# of this repository, which `--working-dir` uploads with the job.
#
# Overlap: flock skips a run while the previous one (refresh + gc) still holds the lock.
# If this host dies mid-run the job goes on on the cluster and the lock is released; a
# refresh started meanwhile on the same output cannot both commit with it (create-only
# manifest versions: the loser fails with ConcurrentCommitError, nothing of it referenced).
# A refresh killed midway is resumed by the next one: finished shards are reused.
set -euo pipefail

: "${RAY_ADDRESS:=http://ray-head.example.internal:8265}"  # the head's dashboard (Jobs API)
# Ray >= 2.60 turns token authentication on. The `ray` CLI sends the cluster's token only
# with RAY_AUTH_MODE=token, and takes it from RAY_AUTH_TOKEN (or ~/.ray/auth_token), e.g.
#   RAY_AUTH_TOKEN="$(cat /etc/e5ray/ray-auth-token)"
: "${RAY_AUTH_MODE:=token}"
export RAY_ADDRESS RAY_AUTH_MODE

INPUT="${E5RAY_INPUT:-s3://my-bucket/corpus/}"
OUTPUT="${E5RAY_OUTPUT:-s3://my-bucket/embeddings/multilingual-e5-large/}"
MODEL="${E5RAY_MODEL:-intfloat/multilingual-e5-large}"
MODEL_PATH="${E5RAY_MODEL_PATH:-s3://my-bucket/models/multilingual-e5-large-onnx/}"
KEEP_VERSIONS="${E5RAY_KEEP_VERSIONS:-3}"
REPO_DIR="${E5RAY_REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
LOCK_FILE="${E5RAY_LOCK_FILE:-/tmp/e5ray-refresh.lock}"

exec 9>"$LOCK_FILE"
if ! flock --nonblock 9; then
    echo "$(date -u +%FT%TZ) previous refresh of $OUTPUT still running; skipping this one"
    exit 0
fi

cd "$REPO_DIR"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"

# `ray job submit` waits for the job, streams its log and exits non-zero if it failed.
ray job submit --address "$RAY_ADDRESS" --working-dir . --submission-id "e5ray-refresh-$stamp" -- \
    python jobs/refresh_corpus.py \
        --input "$INPUT" \
        --output "$OUTPUT" \
        --model "$MODEL" \
        --model-path "$MODEL_PATH" \
        --device cpu

# Only after a successful refresh, still under the lock: delete files that none of the
# newest versions references. --min-age spares files a running job may be about to commit.
ray job submit --address "$RAY_ADDRESS" --working-dir . --submission-id "e5ray-gc-$stamp" -- \
    python -m e5ray.cli gc "$OUTPUT" --keep "$KEEP_VERSIONS" --min-age 3600
