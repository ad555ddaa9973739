#!/usr/bin/env bash
# 1,000 labctl objects in 10 kinds on the test API server, without and with injected latency per
# request, beside kubectl in the same run: `labctl apply` of the new objects vs `kubectl apply
# --server-side`, and `labctl plan` of the applied stack vs `kubectl diff --server-side`. Prints
# a table: API requests (counted by the server) and wall time for each, and the ratio.
# Targets: plan at least 40x faster than kubectl diff; apply of 1,000 new objects < 1.5 s on
# loopback. PROFILE=dev: the debug build of labctl and of the bench (no release build).
#
# Environment: RUNS (plan repetitions of each tool, default 5), LATENCY_MS (default 5), KUBECTL
# (default kubectl), OBJECTS_PER_KIND (default 111: 9 kinds x 111 + the namespace = 1,000 objects).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
profile=${PROFILE:-release}
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
cargo build --profile "$profile" --quiet --bin labctl
LABCTL_BIN=$target/$dir/labctl nice -n 10 cargo bench --profile "$profile" --quiet --bench kube_bench
