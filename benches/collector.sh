#!/usr/bin/env bash
# Benchmark (not a test): `labctl agent collector` beside Debian's prometheus-node-exporter on the
# same machine, in the same run: CPU time per collection and resident memory.
#
#   benches/collector.sh [N] [LABCTL...]   N collections each (default 200); each LABCTL binary gets
#                                          its rows (default: the image's, `make static`)
#
# Targets (issue 9): < 10 MB RSS, < 3 ms CPU per collection, for the binary the DaemonSet runs: the
# image's static binary (`make static`, release profile). It is measured as the DaemonSet runs it
# without an otel-collector, and again exporting OTLP/HTTP (every second) to a sink that takes
# everything, as it runs beside the bundled otel-collector.
#
# node_exporter collects on each scrape, so it is scraped N times. The collector collects every
# 100 ms by itself (its collections are counted from the wall time) and its /metrics is scraped as
# often as node_exporter's, so both rows pay for reading the host and for rendering the text.
# node_exporter runs twice: with its default collectors, and with only those reading what the
# collector reads (cpu, meminfo, loadavg, filesystem, diskstats, netdev, stat). CPU is utime+stime
# from /proc/PID/stat, measured after a warm-up; RSS is VmRSS at the end, VmHWM (peak), and RssAnon
# (heap, stacks and relocated data: RSS less the pages of the binary and libraries, which are
# shared with the page cache); threads from /proc/PID/status.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
shift || true
binaries=("$@")
if [ ${#binaries[@]} = 0 ]; then
  make --quiet static IMAGE_PROFILE=release >/dev/null
  binaries=("${CARGO_TARGET_DIR:-target}/static/release/labctl")
fi
command -v prometheus-node-exporter >/dev/null || {
  echo "prometheus-node-exporter not found: apt-get install prometheus-node-exporter" >&2
  exit 1
}

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
hz=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
wait_http() { for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer at $1" >&2; exit 1; }

rows=()
# measure NAME PID URL PAUSE [INTERVAL]: N scrapes; CPU per scrape, or per collection when the
# agent collects by itself every INTERVAL seconds (collections = wall time / INTERVAL).
measure() {
  local name=$1 pid=$2 url=$3 pause=$4 every=${5:-}
  for _ in $(seq 10); do curl -sf -o /dev/null "$url"; sleep "$pause"; done   # warm-up
  local t0 c0 t1 c1
  t0=$(date +%s.%N); c0=$(cpu_ticks "$pid")
  for _ in $(seq "$n"); do curl -sf -o /dev/null "$url"; sleep "$pause"; done
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
  local series
  series=$(curl -sf "$url" | grep -vc '^#')
  rows+=("$(awk -v name="$name" -v n="$n" -v dc=$((c1 - c0)) -v hz="$hz" -v rss="$(status_kb "$pid" VmRSS)" \
    -v hwm="$(status_kb "$pid" VmHWM)" -v anon="$(status_kb "$pid" RssAnon)" -v s="$series" \
    -v t="$(echo "$t1 - $t0" | bc)" -v every="$every" -v th="$(status_kb "$pid" Threads)" \
    'BEGIN { k = every ? int(t / every) : n;
             printf "%s|%d|%d|%.2f|%.1f|%.1f|%.1f|%d|%.1f", name, k, s, dc * 1000 / hz / k, rss / 1024, hwm / 1024, anon / 1024, th, t }')")
}

# An OTLP/HTTP sink: answers every export with 200 and an empty Export*ServiceResponse (an empty
# protobuf message is zero bytes), so the exporter's path is the one it takes beside a collector.
sink=$(free_port)
python3 - "$sink" <<'PY' 2>"$work/sink.log" &
import sys, http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
pids+=($!)

# labctl: collects every 100 ms; scraped once per collection.
for bin in "${binaries[@]}"; do
  label="labctl agent collector"
  [ ${#binaries[@]} -gt 1 ] && label="$label ($bin)"
  port=$(free_port)
  "$bin" agent collector --interval 100ms --listen "127.0.0.1:$port" --tailscale-socket "$work/none.sock" \
    2>"$work/labctl.log" &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/metrics"
  measure "$label" "${pids[-1]}" "http://127.0.0.1:$port/metrics" 0.1 0.1
  kill "${pids[-1]}"

  port=$(free_port)
  OTEL_METRIC_EXPORT_INTERVAL=1000 "$bin" agent collector --interval 100ms --listen "127.0.0.1:$port" \
    --tailscale-socket "$work/none.sock" --otlp-endpoint "http://127.0.0.1:$sink" 2>"$work/labctl-otlp.log" &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/metrics"
  measure "$label, exporting OTLP" "${pids[-1]}" "http://127.0.0.1:$port/metrics" 0.1 0.1
  kill "${pids[-1]}"
done

port=$(free_port)
prometheus-node-exporter --web.listen-address="127.0.0.1:$port" --log.level=error 2>"$work/ne.log" &
pids+=($!)
wait_http "http://127.0.0.1:$port/metrics"
measure "node_exporter (defaults)" "${pids[-1]}" "http://127.0.0.1:$port/metrics" 0.1

port=$(free_port)
prometheus-node-exporter --web.listen-address="127.0.0.1:$port" --log.level=error \
  --collector.disable-defaults --collector.cpu --collector.meminfo --collector.loadavg \
  --collector.filesystem --collector.diskstats --collector.netdev --collector.stat 2>"$work/ne2.log" &
pids+=($!)
wait_http "http://127.0.0.1:$port/metrics"
measure "node_exporter (same sources)" "${pids[-1]}" "http://127.0.0.1:$port/metrics" 0.1

base_cpu=$(echo "${rows[0]}" | cut -d'|' -f4)
base_rss=$(echo "${rows[0]}" | cut -d'|' -f5)
echo
echo "collector vs node_exporter, $n collections each, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| agent | collections | series | CPU ms / collection | RSS MB | peak RSS MB | anon RSS MB | threads | wall s | CPU ratio | RSS ratio |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for r in "${rows[@]}"; do
  IFS='|' read -r name k s cpu rss hwm anon th t <<<"$r"
  cr=$(awk -v a="$cpu" -v b="$base_cpu" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }')
  rr=$(awk -v a="$rss" -v b="$base_rss" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }')
  echo "| $name | $k | $s | $cpu | $rss | $hwm | $anon | $th | $t | $cr | $rr |"
done
echo
echo "Targets: < 3 ms CPU and < 10 MB RSS per collection for labctl agent collector."
