#!/usr/bin/env bash
# `labctl plan` against the test API server holding 1,000 labctl objects in 10 kinds, with 5 ms
# of injected latency per request, beside `kubectl diff --server-side -f` on the same objects in
# the same run. Prints a table: API requests (counted by the server) and wall time for each.
# Targets: labctl at most 15 requests, and at least 50x faster than kubectl.
#
# Environment: RUNS (labctl repetitions, default 5), LATENCY_MS (default 5), KUBECTL (default
# kubectl), OBJECTS_PER_KIND (default 111: 9 kinds x 111 + the namespace = 1,000 objects).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet --bin labctl
LABCTL_BIN=$target/release/labctl cargo bench --quiet --bench kube_bench
