#!/usr/bin/env bash
# What telemetry costs, side by side in one run:
#  1. `labctl plan --offline` on the bundled stack: no endpoint, an endpoint that takes the data
#     (OTLP/HTTP and gRPC sinks), and an endpoint on a closed port; mean wall time and the ratio to
#     no endpoint (hyperfine).
#  2. Peak RSS (VmHWM) of an idle agent on the shared runtime (examples/idle_agent.rs: READY, a
#     few points and a log line per second) after IDLE seconds, with and without telemetry.
# Needs: hyperfine (apt-get install -y hyperfine), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
# PROFILE=debug measures a debug build (quicker to get; slower to run: quote its ratios only).
profile=${PROFILE:-release}
if [ "$profile" = release ]; then flag=--release; else flag=; fi
nice -n 10 cargo build $flag --quiet --bin labctl --example idle_agent
target=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target/$profile/labctl
idle=$target/$profile/examples/idle_agent
echo "profile: $profile"
runs=${RUNS:-30}
IDLE=${IDLE:-10}

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A sink answering every OTLP/HTTP export with 200 and an empty protobuf message (a valid
# Export*ServiceResponse). A live gRPC sink would need HTTP/2; gRPC is measured on the closed port
# only (its delivery is tested in tests/it/telemetry.rs).
http_port=$(free_port)
cat > "$work/sink.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$work/sink.py" "$http_port" & pids+=($!)
closed=$(free_port)
sleep 0.5

clean="env -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_PROTOCOL -u OTEL_SDK_DISABLED"
plan="$bin --stack stack.toml plan --offline"
nice -n 10 hyperfine --warmup 3 --runs "$runs" -N --export-json "$work/plan.json" \
  -n "no endpoint" "$clean $plan" \
  -n "http sink" "$clean OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$http_port $plan" \
  -n "closed port (http)" "$clean OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$closed $plan" \
  -n "closed port (grpc)" "$clean OTEL_EXPORTER_OTLP_PROTOCOL=grpc OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$closed $plan" \
  >/dev/null 2>&1 || { echo "hyperfine failed" >&2; exit 1; }

echo
echo "labctl plan --offline, bundled stack ($runs runs each)"
python3 - "$work/plan.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
base = r[0]["mean"]
print(f"| {'case':<20} | {'mean ms':>8} | {'stddev':>7} | {'min ms':>7} | {'ratio':>6} |")
print(f"|{'-'*22}|{'-'*10}|{'-'*9}|{'-'*9}|{'-'*8}|")
for x in r:
    print(f"| {x['command']:<20} | {x['mean']*1000:8.1f} | {x['stddev']*1000:7.1f} | {x['min']*1000:7.1f} | {x['mean']/base:6.2f} |")
PY

# Peak RSS of the idle agent runtime.
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
measure() {
  "$@" >/dev/null 2>&1 & local p=$!
  sleep "$IDLE"
  local kb; kb=$(hwm "$p")
  kill -TERM "$p"; wait "$p" 2>/dev/null || true
  echo "$kb"
}
on=$(measure env -u OTEL_EXPORTER_OTLP_ENDPOINT OTEL_METRIC_EXPORT_INTERVAL=1000 "$idle" "http://127.0.0.1:$http_port")
off=$(measure env -u OTEL_EXPORTER_OTLP_ENDPOINT "$idle")
dead=$(measure env -u OTEL_EXPORTER_OTLP_ENDPOINT OTEL_METRIC_EXPORT_INTERVAL=1000 "$idle" "http://127.0.0.1:$closed")
echo
echo "idle agent runtime (examples/idle_agent), peak RSS after ${IDLE} s"
printf '| %-36s | %8s | %6s |\n' case "VmHWM MB" ratio
printf '|%s|%s|%s|\n' "--------------------------------------" "----------" "--------"
for row in "telemetry off:$off" "telemetry on, http sink, 1 s metrics:$on" "telemetry on, closed port:$dead"; do
  name=${row%%:*}; kb=${row##*:}
  printf '| %-36s | %8.1f | %6.2f |\n' "$name" "$(echo "$kb/1024" | bc -l)" "$(echo "$kb/$off" | bc -l)"
done
