#!/usr/bin/env bash
# Benchmark (not a test): signed GitHub push webhooks (tests/fixtures/github-push.json, a real-size
# payload) with wrk, against `labctl agent proxy` and, in the same run, Debian's `webhook`
# (adnanh/webhook) with an HMAC-SHA256 rule running /bin/true. Loopback; every request carries a
# new X-GitHub-Delivery, so the proxy does its whole job each time (verify, remember the delivery,
# write the pending sync durably) rather than answering redeliveries.
#
#   benches/proxy.sh [SECONDS]     LABCTL=path/to/labctl to skip the release build
#
# Needs: apt-get install -y wrk webhook openssl curl
# Targets (issue 8): >= 3x webhook's requests/s, p99 < 10 ms, proxy idle RSS < 15 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
for tool in wrk webhook openssl curl git; do
  command -v "$tool" >/dev/null || { echo "benches/proxy.sh needs \`$tool\` (apt-get install -y wrk webhook)" >&2; exit 1; }
done
if [ -z "${LABCTL:-}" ]; then
  cargo build --release --quiet --bin labctl
  LABCTL=${CARGO_TARGET_DIR:-target}/release/labctl
fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

secret="bench-secret-$$"
body=tests/fixtures/github-push.json
sig="sha256=$(openssl dgst -sha256 -hmac "$secret" -r <"$body" | cut -d' ' -f1)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The proxy, on a checkout whose origin is the payload's repository.
repo=$work/homelab
git init -q -b main "$repo"
git -C "$repo" remote add origin https://github.com/acme/homelab.git
{
  printf '[stack]\nname = "bench"\n\n'
  for c in kube.collectors kube.grafana kube.loki kube.minio kube.otel-collector kube.postgres \
    kube.prometheus kube.tempo kube.thanos host.collector host.ingest host.gate host.openbao \
    host.reading-sync; do
    printf '[%s]\nenabled = false\n\n' "$c"
  done
} >"$repo/stack.toml"
pport=$(free_port)
LABCTL_WEBHOOK_SECRET=$secret LABCTL_LOG=warn "$LABCTL" agent proxy --listen "127.0.0.1:$pport" \
  --repo-dir "$repo" --branch main 2>"$work/proxy.log" &
pids+=($!); proxy_pid=$!

# adnanh/webhook with the same secret.
wport=$(free_port)
cat >"$work/hooks.json" <<JSON
[{
  "id": "push",
  "execute-command": "/bin/true",
  "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": "$secret",
    "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}}
}]
JSON
webhook -hooks "$work/hooks.json" -ip 127.0.0.1 -port "$wport" >"$work/webhook.log" 2>&1 &
pids+=($!); webhook_pid=$!

for i in $(seq 100); do
  curl -sf "http://127.0.0.1:$pport/healthz" >/dev/null && break; sleep 0.1
done
for i in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$wport/hooks/push" && break; sleep 0.1
done

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
idle_proxy=$(rss_kb "$proxy_pid"); idle_webhook=$(rss_kb "$webhook_pid")

# Both accept the signed push (and refuse it unsigned) before anything is measured.
check() { # url expected-status signature
  local got
  got=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$1" -H 'Content-Type: application/json' \
    -H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: check-$RANDOM$RANDOM" \
    -H "X-Hub-Signature-256: $3" --data-binary @"$body")
  [ "$got" = "$2" ] || { echo "$1 answered $got, expected $2" >&2; exit 1; }
}
check "http://127.0.0.1:$pport/hooks/github" 202 "$sig"
check "http://127.0.0.1:$pport/hooks/github" 401 "sha256=00"
check "http://127.0.0.1:$wport/hooks/push" 200 "$sig"
check "http://127.0.0.1:$wport/hooks/push" 500 "sha256=00" 2>/dev/null \
  || check "http://127.0.0.1:$wport/hooks/push" 400 "sha256=00" 2>/dev/null \
  || echo "note: webhook's answer to a bad signature is neither 400 nor 500" >&2

cat >"$work/push.lua" <<LUA
local f = io.open("$body", "rb"); local body = f:read("*a"); f:close()
local n = 0
local id = tostring(math.random(1, 1e9))
setup = function(thread) thread:set("id", tostring(math.random(1, 1e9))) end
request = function()
  n = n + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = id .. "-" .. n,
    ["X-Hub-Signature-256"] = "$sig",
    ["User-Agent"] = "GitHub-Hookshot/bench",
  }, body)
end
LUA

run() { # name url
  nice -n 10 wrk -t2 -c16 -d"${secs}s" --latency -s "$work/push.lua" "$2" >"$work/$1.wrk"
  local rps p99 non2xx
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/$1.wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$work/$1.wrk")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/$1.wrk")
  echo "$1 $rps $p99 ${non2xx:-0}"
}
p=$(run proxy "http://127.0.0.1:$pport/hooks/github")
w=$(run webhook "http://127.0.0.1:$wport/hooks/push")
busy_proxy=$(rss_kb "$proxy_pid"); busy_webhook=$(rss_kb "$webhook_pid")

read -r _ prps pp99 pbad <<<"$p"
read -r _ wrps wp99 wbad <<<"$w"
echo
echo "signed push webhooks ($(wc -c <"$body") B), wrk -t2 -c16 -d${secs}s, loopback, same run"
printf '| %-22s | %10s | %9s | %8s | %13s | %13s |\n' server "req/s" p99 non-2xx "idle RSS (MB)" "after (MB)"
printf '|%s|%s|%s|%s|%s|%s|\n' ------------------------ ------------ ----------- ---------- --------------- ---------------
printf '| %-22s | %10s | %9s | %8s | %13.1f | %13.1f |\n' "labctl agent proxy" "$prps" "$pp99" "$pbad" \
  "$(echo "$idle_proxy/1024" | bc -l)" "$(echo "$busy_proxy/1024" | bc -l)"
printf '| %-22s | %10s | %9s | %8s | %13.1f | %13.1f |\n' "webhook 2.8 (/bin/true)" "$wrps" "$wp99" "$wbad" \
  "$(echo "$idle_webhook/1024" | bc -l)" "$(echo "$busy_webhook/1024" | bc -l)"
printf 'requests/s ratio proxy/webhook: %.2f\n' "$(echo "$prps/$wrps" | bc -l)"
