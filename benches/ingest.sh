#!/usr/bin/env bash
# Benchmark (not a test): `labctl agent ingest --once` pulling 10,000 labelled issues (and 2,000
# comments) from the project's GitHub stand-in into a real PostgreSQL started from Debian's
# `postgresql` (as the tests start it). Prints a table: wall time, issues/s, API calls, 304s and
# rate limit used, for first syncs into empty databases, the sync after, and an unchanged repository.
#
#   benches/ingest.sh            ISSUES=N RUNS=N LATENCY_MS=N to change the load;
#                                LABCTL=path/to/labctl to skip the release build;
#                                HARNESS=path/to/ingest_bench to skip building the harness (e.g. the
#                                debug one, `cargo build --bench ingest_bench`: the stand-in's own
#                                time is its own column, apart from labctl's)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
if [ -z "${LABCTL:-}" ]; then
  cargo build --release --quiet --bin labctl
  LABCTL=$target/release/labctl
fi
if [ -n "${HARNESS:-}" ]; then
  LABCTL_BIN=$LABCTL nice -n 10 "$HARNESS"
else
  LABCTL_BIN=$LABCTL nice -n 10 cargo bench --quiet --bench ingest_bench
fi
