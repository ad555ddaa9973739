#!/usr/bin/env bash
# A rollback of the bundled stack, measured: its kube plane on the project's test API server
# (`labctl-testapi --auto-rollout`) and its host collector on a real systemd user manager.
# Generation 1 is the bundled stack, generation 2 moves Grafana's image and the collector's
# interval; `labctl rollback` then applies generation 1 again. Prints, for the apply of
# generation 2 and for the rollback: wall time, API requests (counted by the server) and D-Bus
# calls (`-v`), and checks that a plan afterwards says `No changes.`.
#
#   benches/rollback.sh            RUNS (default 5) rollbacks, each after a fresh generation 2
#   SHOW=1 benches/rollback.sh     and print the last rollback's `-v` output
#
# Most of each apply is the host's: the settle time of the restarted collector (1 s, its health
# gate) and the collector's stop, whose last telemetry flush retries the OTLP endpoint this
# bench does not run (the exporter's recommended backoff, 100+200+400 ms).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet --bin labctl -p labctl
cargo build --release --quiet -p labctl-testapi --bin labctl-testapi
bin=$target/release/labctl
api=$target/release/labctl-testapi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
[ -n "${SHOW:-}" ] && trap 'cat "$work/rollback.err"; cleanup' EXIT

# A user manager of its own (testing.md's recipe).
export XDG_RUNTIME_DIR=$work/run XDG_CONFIG_HOME=$work/config HOME=$work/home
mkdir -p -m 700 "$XDG_RUNTIME_DIR"; mkdir -p "$XDG_CONFIG_HOME/systemd/user" "$HOME"
made=0; [ -d /run/systemd/system ] || { mkdir -p /run/systemd/system; made=1; }
setsid /lib/systemd/systemd --user >"$work/manager.log" 2>&1 </dev/null &
pids+=($!)
for _ in $(seq 100); do [ -S "$XDG_RUNTIME_DIR/bus" ] && [ -S "$XDG_RUNTIME_DIR/systemd/private" ] && break; sleep 0.1; done
[ "$made" = 1 ] && rmdir /run/systemd/system
export DBUS_SESSION_BUS_ADDRESS=unix:path=$XDG_RUNTIME_DIR/bus

"$api" --auto-rollout > "$work/api.out" 2>"$work/api.err" &
pids+=($!)
for _ in $(seq 100); do [ "$(wc -l < "$work/api.out")" -ge 2 ] && break; sleep 0.1; done
url=$(sed -n 1p "$work/api.out")
export KUBECONFIG; KUBECONFIG=$(sed -n 2p "$work/api.out")

# The bundled stack, its host plane reduced to the collector (the other units need OpenBao,
# PostgreSQL, GitHub and tailscale, which this bench does not start), for the user manager.
mkdir -p "$work/lab"
stack=$work/lab/stack.toml
python3 - "$bin" stack.toml "$stack" <<'PY'
import re, sys
binary, src, dst = sys.argv[1:]
out = []
for line in open(src):
    line = re.sub(r'^scope = "system"$', 'scope = "user"', line)
    line = re.sub(r'^labctl_path = .*$', f'labctl_path = "{binary}"', line)
    out.append(line)
    if re.match(r'^\[host\.(proxy|ingest|gate|openbao|reading-sync)\]', line):
        out.append("enabled = false\n")
open(dst, "w").write("".join(out))
PY
# Grafana datasource and ingest secrets, as LABCTL_SECRET_* overrides.
export LABCTL_SECRET_GRAFANA_ADMIN_PASSWORD=bench-grafana LABCTL_SECRET_MINIO_ROOT_PASSWORD=bench-minio
export LABCTL_SECRET_POSTGRES_PASSWORD=bench-postgres LABCTL_SECRET_WEBHOOK_SECRET=bench-webhook
export LABCTL_SECRET_GITHUB_TOKEN=bench-github
lab() { "$bin" --stack "$stack" "$@"; }
lab validate >/dev/null 2>&1 || { lab validate; exit 1; }
lab apply --yes --user >/dev/null 2>"$work/first.err" || { cat "$work/first.err"; exit 1; }

requests() { curl -sf "$url/testapi/requests" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }
reset() { curl -sf -X POST "$url/testapi/reset" >/dev/null; }
dbus() { awk '/^systemd: [0-9]+ D-Bus calls/ {n += $2} END {print n + 0}' "$1"; }
ms() { python3 -c "import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))" "$1" "$2"; }

rows=()
for i in $(seq "$runs"); do
  cp "$stack" "$work/gen1.toml"
  sed -i -e 's|^\(\[kube.grafana\].*\)$|\1\nimage = "docker.io/grafana/grafana:11.4.1"|' \
         -e 's|^interval = "15s"  *# sends|interval = "'"$((15 + i))"'s"  # sends|' "$stack"
  reset; t0=$(date +%s.%N)
  lab -v apply --yes --user >/dev/null 2>"$work/apply.err" || { cat "$work/apply.err"; exit 1; }
  t1=$(date +%s.%N); apply_req=$(requests)
  cp "$work/gen1.toml" "$stack"
  reset; t2=$(date +%s.%N)
  lab -v rollback --yes --user >/dev/null 2>"$work/rollback.err" || { cat "$work/rollback.err"; exit 1; }
  t3=$(date +%s.%N); back_req=$(requests)
  lab plan --user --detailed-exitcode >/dev/null || { echo "not converged after the rollback" >&2; exit 1; }
  rows+=("| $i | $(ms "$t0" "$t1") | $apply_req | $(dbus "$work/apply.err") | $(ms "$t2" "$t3") | $back_req | $(dbus "$work/rollback.err") |")
done
objects=$(lab plan --offline -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["changes"]))')
echo "bundled stack: $objects objects (kube + the collector unit)"
echo "| run | apply gen 2 (ms) | API requests | D-Bus calls | rollback to gen 1 (ms) | API requests | D-Bus calls |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
