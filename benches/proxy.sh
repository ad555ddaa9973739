#!/usr/bin/env bash
# Benchmark (not a test), two parts, one run:
#
# 1. Signed GitHub push webhooks (real-size payloads made from tests/fixtures/github-push.json) with
#    wrk, against `labctl agent proxy` and, in the same run, Debian's `webhook` (adnanh/webhook)
#    with an HMAC-SHA256 rule running /bin/true. Loopback. Every request carries a new
#    X-GitHub-Delivery and one of $BODIES payloads, each pushing a different commit: the proxy does
#    its whole job each time (verify, claim the delivery, make the pending sync durable before the
#    202, remember the delivery), and no request is answered from a "same commit" shortcut.
# 2. Webhook -> apply: a signed push of a one-unit change to a local bare origin, from the request
#    to `/sync/status` saying the apply finished, on a real, isolated systemd user manager; beside it
#    `labctl apply --yes` of the same kind of change, run by hand (the engine's own time).
#
#   benches/proxy.sh [SECONDS] [ROUNDS]     LABCTL=path/to/labctl to skip the release build,
#                                           PROXY_LOG=FILE to keep the syncing proxy's log
#
# Needs: apt-get install -y wrk webhook curl python3 git systemd dbus-user-session
# Targets (issue 8): >= 3x webhook's requests/s, p99 < 10 ms, proxy idle RSS < 15 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
bodies=${BODIES:-256}
for tool in wrk webhook curl git python3; do
  command -v "$tool" >/dev/null || { echo "benches/proxy.sh needs \`$tool\` (apt-get install -y wrk webhook curl python3 git)" >&2; exit 1; }
done
if [ -z "${LABCTL:-}" ]; then
  cargo build --release --quiet --bin labctl
  LABCTL=${CARGO_TARGET_DIR:-target}/release/labctl
fi

work=$(mktemp -d)
export LABCTL_SD_STATE=$work/manager
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/systemd-user-manager.sh stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

secret="bench-secret-$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# sign FILE: GitHub's X-Hub-Signature-256 of the file's bytes.
sign() { python3 -c 'import hmac,hashlib,sys; print("sha256="+hmac.new(sys.argv[1].encode(), open(sys.argv[2],"rb").read(), hashlib.sha256).hexdigest())' "$secret" "$1"; }

# $bodies payloads, each pushing its own commit, and their signatures (one per line).
mkdir -p "$work/bodies"
python3 - "$secret" "$work/bodies" "$bodies" <<'PY'
import hashlib, hmac, sys
secret, out, n = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3])
base = open("tests/fixtures/github-push.json", "rb").read()
old = b"3d1f6b7e2c9a4f5b8e0d7c6a5b4f3e2d1c0b9a87"
with open(f"{out}/sigs", "w") as sigs:
    for i in range(1, n + 1):
        body = base.replace(old, hashlib.sha1(b"commit %d" % i).hexdigest().encode())
        open(f"{out}/{i}", "wb").write(body)
        sigs.write("sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest() + "\n")
PY
size=$(wc -c <"$work/bodies/1")

# The proxy, on a checkout whose origin is the payload's repository (unreachable here: the syncs
# the pushes wake fail at `git fetch`, quickly, as they would with GitHub down).
repo=$work/homelab
git init -q -b main "$repo"
git -C "$repo" remote add origin https://github.com/acme/homelab.git
disabled_components() {
  for c in collectors grafana loki minio otel-collector postgres prometheus tempo thanos; do
    printf '[kube.%s]\nenabled = false\n\n' "$c"
  done
  for c in proxy collector ingest gate openbao reading-sync; do
    printf '[host.%s]\nenabled = false\n\n' "$c"
  done
}
{ printf '[stack]\nname = "bench"\n\n'; disabled_components; } >"$repo/stack.toml"
pport=$(free_port)
LABCTL_WEBHOOK_SECRET=$secret LABCTL_LOG=warn DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent \
  "$LABCTL" agent proxy --listen "127.0.0.1:$pport" --repo-dir "$repo" --branch main \
  2>"$work/proxy.log" &
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

for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$pport/healthz" >/dev/null && break; sleep 0.1
done
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$wport/hooks/push" && break; sleep 0.1
done

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# CPU time of a process and its waited-for children (webhook's /bin/true runs), in clock ticks.
cpu_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
idle_proxy=$(rss_kb "$proxy_pid"); idle_webhook=$(rss_kb "$webhook_pid")

# Both accept a signed push (and refuse it unsigned) before anything is measured.
sig1=$(sed -n 1p "$work/bodies/sigs")
check() { # url expected-status signature
  local got
  got=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$1" -H 'Content-Type: application/json' \
    -H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: check-$RANDOM$RANDOM" \
    -H "X-Hub-Signature-256: $3" --data-binary @"$work/bodies/1")
  [ "$got" = "$2" ] || { echo "$1 answered $got, expected $2" >&2; exit 1; }
}
check "http://127.0.0.1:$pport/hooks/github" 202 "$sig1"
check "http://127.0.0.1:$pport/hooks/github" 401 "sha256=00"
check "http://127.0.0.1:$wport/hooks/push" 200 "$sig1"
check "http://127.0.0.1:$wport/hooks/push" 500 "sha256=00" 2>/dev/null \
  || check "http://127.0.0.1:$wport/hooks/push" 400 "sha256=00" 2>/dev/null \
  || echo "note: webhook's answer to a bad signature is neither 400 nor 500" >&2

cat >"$work/push.lua" <<LUA
local bodies, sigs = {}, {}
for s in io.lines("$work/bodies/sigs") do
  sigs[#sigs + 1] = s
  local f = io.open("$work/bodies/" .. #sigs, "rb"); bodies[#sigs] = f:read("*a"); f:close()
end
local n = 0
setup = function(thread) thread:set("id", tostring(math.random(1, 1e9))) end
request = function()
  n = n + 1
  local i = (n % #bodies) + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = id .. "-" .. n,
    ["X-Hub-Signature-256"] = sigs[i],
    ["User-Agent"] = "GitHub-Hookshot/bench",
  }, bodies[i])
end
LUA

run() { # name url pid
  local c0 c1
  c0=$(cpu_ticks "$3")
  nice -n 10 wrk -t2 -c16 -d"${secs}s" --latency -s "$work/push.lua" "$2" >"$work/$1.wrk"
  c1=$(cpu_ticks "$3")
  local rps p50 p99 non2xx n cpu
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/$1.wrk")
  p50=$(awk '$1 == "50%" {print $2}' "$work/$1.wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$work/$1.wrk")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/$1.wrk")
  n=$(awk '/requests in/ {print $1}' "$work/$1.wrk")
  cpu=$(( (c1 - c0) * 1000000 / hz / n ))
  echo "$1 $rps $p50 $p99 ${non2xx:-0} $cpu"
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
p=$(run proxy "http://127.0.0.1:$pport/hooks/github" "$proxy_pid")
w=$(run webhook "http://127.0.0.1:$wport/hooks/push" "$webhook_pid")
busy_proxy=$(rss_kb "$proxy_pid"); busy_webhook=$(rss_kb "$webhook_pid")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
# What the proxy made durable: the newest commit of the flood, in the pending-sync log.
state=$repo/.git/labctl-proxy
pending_lines=$(wc -l <"$state/pending-sync.jsonl")
kill "$proxy_pid" "$webhook_pid"

# --- Part 2: webhook -> apply, on a real user manager -------------------------------------------
eval "$(scripts/systemd-user-manager.sh start)"
origin=$work/origin/acme/homelab.git
gitops=$work/gitops/homelab
hand=$work/hand/homelab
git init -q --bare -b main "$origin"
gitc() { git -c user.name=Bench -c user.email=bench@example.com -C "$@"; }
# write_stack DIR N: the stack with units pxb-1 .. pxb-N (a sleeping service each).
write_stack() {
  mkdir -p "$1/systemd-templates"
  cat >"$1/systemd-templates/sleeper.service" <<'UNIT'
[Unit]
Description=labctl proxy benchmark {{ component }}

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=default.target
UNIT
  {
    printf '[stack]\nname = "proxybench"\n\n'; disabled_components
    printf '[host]\nscope = "user"\n\n'
    for i in $(seq 1 "$2"); do printf '[host.extra.pxb-%s]\ntemplate = "sleeper"\n\n' "$i"; done
  } >"$1/stack.toml"
}
mkdir -p "$gitops"
git init -q -b main "$gitops"
git -C "$gitops" remote add origin "$origin"
write_stack "$gitops" 1
gitc "$gitops" add -A; gitc "$gitops" commit -q -m "1 unit"; gitc "$gitops" push -q origin main
"$LABCTL" --stack "$gitops/stack.toml" apply --yes >"$work/apply.log" 2>&1 || { cat "$work/apply.log" >&2; exit 1; }
git clone -q "$origin" "$hand"

aport=$(free_port)
LABCTL_WEBHOOK_SECRET=$secret LABCTL_LOG=info \
  "$LABCTL" agent proxy --listen "127.0.0.1:$aport" --repo-dir "$gitops" --branch main \
  2>"$work/proxy-apply.log" &
pids+=($!)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$aport/healthz" >/dev/null && break; sleep 0.1
done

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
proxy_ms=(); hand_ms=()
units=1
for r in $(seq 1 "$rounds"); do
  # Pushed: one more unit, synced by the proxy.
  units=$((units + 1))
  write_stack "$hand" "$units"
  gitc "$hand" add -A; gitc "$hand" commit -q -m "$units units"; gitc "$hand" push -q origin main
  before=$(gitc "$hand" rev-parse HEAD~1); after=$(gitc "$hand" rev-parse HEAD)
  sed -e "s/3d1f6b7e2c9a4f5b8e0d7c6a5b4f3e2d1c0b9a87/$after/g" \
    -e "s/6113728f27ae82c7b1a177c8d03f9e96e0adf246/$before/g" tests/fixtures/github-push.json \
    >"$work/push-$r.json"
  sig=$(sign "$work/push-$r.json")
  t0=$(date +%s%N)
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$aport/hooks/github" \
    -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
    -H "X-GitHub-Delivery: apply-$r-$$" -H "X-Hub-Signature-256: $sig" \
    --data-binary @"$work/push-$r.json")
  [ "$code" = 202 ] || { echo "the push answered $code" >&2; cat "$work/proxy-apply.log" >&2; exit 1; }
  status=
  for _ in $(seq 6000); do
    status=$(curl -s "http://127.0.0.1:$aport/sync/status")
    case $status in *"\"commit\":\"$after\""*'"finished":"'*) break ;; esac
    sleep 0.005
  done
  proxy_ms+=("$(ms_since "$t0")")
  case $status in *'"result":"ok"'*'"add":1,'*) ;; *)
    echo "the sync of $after did not apply one unit: $status" >&2; cat "$work/proxy-apply.log" >&2; exit 1 ;;
  esac
  systemctl --user is-active -q "pxb-$units.service" || { echo "pxb-$units is not active" >&2; exit 1; }

  # By hand: one more unit, `labctl apply --yes` in the other checkout (the same engine, timed
  # from the command's start to its exit).
  units=$((units + 1))
  write_stack "$hand" "$units"
  t0=$(date +%s%N)
  "$LABCTL" --stack "$hand/stack.toml" apply --yes >>"$work/apply.log" 2>&1 || { cat "$work/apply.log" >&2; exit 1; }
  hand_ms+=("$(ms_since "$t0")")
  gitc "$hand" add -A; gitc "$hand" commit -q -m "$units units"; gitc "$hand" push -q origin main
done
"$LABCTL" --stack "$hand/stack.toml" plan 2>/dev/null | grep -q 'No changes.' \
  || { echo "the manager does not match the stack after the rounds" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
pm=$(median "${proxy_ms[@]}"); hm=$(median "${hand_ms[@]}")

# The proxy's own log of the syncs (timestamps per phase), when asked for.
[ -n "${PROXY_LOG:-}" ] && cp "$work/proxy-apply.log" "$PROXY_LOG"
read -r _ prps pp50 pp99 pbad pcpu <<<"$p"
read -r _ wrps wp50 wp99 wbad wcpu <<<"$w"
echo
echo "signed push webhooks ($size B, $bodies distinct commits), wrk -t2 -c16 -d${secs}s, loopback, same run"
echo "load average before/after: $load_before / $load_after ($(nproc) cores)"
printf '| %-24s | %10s | %9s | %9s | %8s | %12s | %13s | %13s |\n' server "req/s" p50 p99 non-2xx "CPU us/req" "idle RSS (MB)" "after (MB)"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' -------------------------- ------------ ----------- ----------- ---------- -------------- --------------- ---------------
printf '| %-24s | %10s | %9s | %9s | %8s | %12s | %13.1f | %13.1f |\n' "labctl agent proxy" "$prps" "$pp50" "$pp99" "$pbad" "$pcpu" \
  "$(echo "$idle_proxy/1024" | bc -l)" "$(echo "$busy_proxy/1024" | bc -l)"
printf '| %-24s | %10s | %9s | %9s | %8s | %12s | %13.1f | %13.1f |\n' "webhook 2.8 (/bin/true)" "$wrps" "$wp50" "$wp99" "$wbad" "$wcpu" \
  "$(echo "$idle_webhook/1024" | bc -l)" "$(echo "$busy_webhook/1024" | bc -l)"
printf 'requests/s ratio proxy/webhook: %.2f (target >= 3)\n' "$(echo "$prps/$wrps" | bc -l)"
echo "pending-sync log after the flood: $pending_lines line(s) (one per shared flush since the last compaction)"
echo
echo "one-unit change on a real systemd user manager, $rounds round(s) each, median (all rounds)"
printf '| %-52s | %10s | %-22s |\n' path "median ms" rounds
printf '|%s|%s|%s|\n' ------------------------------------------------------ ------------ ------------------------
printf '| %-52s | %10s | %-22s |\n' "signed push -> proxy sync applied (webhook->apply)" "$pm" "${proxy_ms[*]}"
printf '| %-52s | %10s | %-22s |\n' "labctl apply --yes, by hand (same kind of change)" "$hm" "${hand_ms[*]}"
printf 'ratio webhook->apply / labctl apply: %.2f\n' "$(echo "$pm/$hm" | bc -l)"
