#!/usr/bin/env bash
# What each of the binary's memory tricks (src/bin/labctl/memory.rs) gains, measured side by side
# in one run: the same release binary with its tricks on, and with `LABCTL_TRICKS=off`.
#
#   benches/tricks.sh            RUNS (default 20) hyperfine runs of each plan
#
# Rows:
# - plan of 1,000 applied objects on the test API server (`labctl-testapi --auto-rollout`): wall
#   and system time, page faults and peak RSS. The trick: transparent huge pages for commands that
#   read live state (mimalloc asks for them; `.init_array` holds them back until the command is
#   known).
# - offline plan of the same 1,000 objects: peak RSS. The trick: huge pages held back from a
#   command that does not read live state.
# - the collector and the idle proxy: resident and anonymous memory a few seconds after start.
#   The tricks: huge pages held back from agents, the binary's start-up pages unmapped once the
#   agent has settled.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-20}
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet --bin labctl -p labctl
cargo build --release --quiet -p labctl-testapi --bin labctl-testapi
bin=$target/release/labctl
api=$target/release/labctl-testapi
command -v hyperfine >/dev/null || { echo "hyperfine not found: apt-get install hyperfine" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# The stack of benches/plan.sh: 999 objects of three kinds plus the namespace.
{ sed 's/^name = "lab"/name = "bench"/' tests/fixtures/bare.toml
  printf '\n[kube.extra.bulk]\nvalues = { count = 333 }\n'; } > "$work/stack.toml"
mkdir -p "$work/templates/bulk"
sed -n '/^cat > "$gen\/templates\/bulk\/objects.yaml" <<'"'"'YAML'"'"'$/,/^YAML$/p' benches/plan.sh \
  | sed '1d;$d' > "$work/templates/bulk/objects.yaml"

"$api" --auto-rollout > "$work/api.out" 2>"$work/api.err" &
pids+=($!)
for _ in $(seq 100); do [ "$(wc -l < "$work/api.out")" -ge 2 ] && break; sleep 0.1; done
kubeconfig=$(sed -n 2p "$work/api.out")
lab() { "$bin" --stack "$work/stack.toml" "$@" --kubeconfig "$kubeconfig" --plane kube; }
lab apply --yes --no-wait >/dev/null 2>&1
lab plan --detailed-exitcode >/dev/null   # applied: no changes

peak_kb() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1; }
faults() { /usr/bin/time -f '%R' "$@" 2>&1 >/dev/null | tail -n 1; }
plan_live=("$bin" --stack "$work/stack.toml" plan --kubeconfig "$kubeconfig" --plane kube)
plan_off=("$bin" --stack "$work/stack.toml" plan --offline --plane kube)

hyperfine --style none --runs "$runs" --warmup 3 --export-json "$work/plan.json" \
  -n on "${plan_live[*]}" -n off "LABCTL_TRICKS=off ${plan_live[*]}" >/dev/null
read -r on_ms on_sys off_ms off_sys < <(python3 - "$work/plan.json" <<'PY'
import json, statistics, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
# hyperfine keeps every run's wall time, and only the mean of user and system time.
m = lambda k: statistics.median(r[k]["times"]) * 1000
s = lambda k: r[k]["system"] * 1000
print(f'{m("on"):.1f} {s("on"):.1f} {m("off"):.1f} {s("off"):.1f}')
PY
)

agent_mem() {   # agent_mem ENV... -- ARGS: VmRSS and RssAnon (kB) after the agent settled
  local envs=() ; while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" "$bin" agent "$@" >/dev/null 2>&1 &
  local pid=$!
  sleep 4
  awk '$1=="VmRSS:"{r=$2} $1=="RssAnon:"{a=$2} END{print r, a}' "/proc/$pid/status"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
collector=(collector --interval 1s --listen "127.0.0.1:$(port)")
git init -q "$work/repo" && git -C "$work/repo" commit -q --allow-empty -m x
proxy_args() { echo proxy --listen "127.0.0.1:$(port)" --repo-dir "$work/repo" --branch main --state-dir "$work/state-$1"; }

printf '| measure | tricks on | tricks off | gain |\n| --- | ---: | ---: | ---: |\n'
awk -v a="$on_ms" -v b="$off_ms" 'BEGIN{printf "| plan, 1,000 live objects (median ms) | %.1f | %.1f | %.2fx |\n", a, b, b/a}'
awk -v a="$on_sys" -v b="$off_sys" 'BEGIN{printf "| plan, system time (mean ms) | %.1f | %.1f | %.2fx |\n", a, b, b/a}'
fo=$(faults "${plan_live[@]}"); ff=$(LABCTL_TRICKS=off faults "${plan_live[@]}")
echo "| plan, minor page faults | $fo | $ff | |"
po=$(peak_kb "${plan_live[@]}"); pf=$(LABCTL_TRICKS=off peak_kb "${plan_live[@]}")
echo "| plan, peak RSS (kB) | $po | $pf | |"
oo=$(peak_kb "${plan_off[@]}"); of=$(LABCTL_TRICKS=off peak_kb "${plan_off[@]}")
echo "| offline plan, peak RSS (kB) | $oo | $of | |"
read -r cr ca < <(agent_mem LABCTL_LOG=warn -- "${collector[@]}")
read -r cr2 ca2 < <(agent_mem LABCTL_LOG=warn LABCTL_TRICKS=off -- "${collector[@]}")
echo "| collector, RSS / anonymous (kB) | $cr / $ca | $cr2 / $ca2 | |"
for t in huge-pages start-up-pages; do
  read -r r a < <(agent_mem LABCTL_LOG=warn LABCTL_TRICKS=-$t -- "${collector[@]}")
  echo "| collector without $t only, RSS / anonymous (kB) | $cr / $ca | $r / $a | |"
done
# shellcheck disable=SC2046
read -r pr pa < <(agent_mem LABCTL_LOG=warn LABCTL_WEBHOOK_SECRET=x -- $(proxy_args a))
# shellcheck disable=SC2046
read -r pr2 pa2 < <(agent_mem LABCTL_LOG=warn LABCTL_WEBHOOK_SECRET=x LABCTL_TRICKS=off -- $(proxy_args b))
echo "| idle proxy, RSS / anonymous (kB) | $pr / $pa | $pr2 / $pa2 | |"
