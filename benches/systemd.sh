#!/usr/bin/env bash
# Benchmark (not a test): plan and apply N units (default 50) on a fresh, isolated systemd user
# manager; print D-Bus calls and wall time for each step.
#
#   benches/systemd.sh [N]        LABCTL=path/to/labctl to skip the release build
#
# Targets (issue 3): plan < 100 ms and at most 2 D-Bus round trips per unit; apply of 50 new units
# < 3 s. Wall times include process start-up; "in backend" is the time inside D-Bus calls.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-50}

if [ -z "${LABCTL:-}" ]; then
  cargo build --release --quiet --bin labctl
  LABCTL=${CARGO_TARGET_DIR:-target}/release/labctl
fi

work=$(mktemp -d)
export LABCTL_SD_STATE=$work/manager
cleanup() { scripts/systemd-user-manager.sh stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
eval "$(scripts/systemd-user-manager.sh start)"

stack=$work/stack
mkdir -p "$stack/systemd-templates"
cat >"$stack/systemd-templates/bench.service" <<'UNIT'
[Unit]
Description=labctl benchmark unit {{ component }}

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=default.target
UNIT
{
  echo '[stack]'; echo 'name = "bench"'; echo
  for c in collectors grafana loki minio otel-collector postgres prometheus tempo thanos; do
    printf '[kube.%s]\nenabled = false\n\n' "$c"
  done
  printf '[host]\nscope = "user"\n\n'
  for c in proxy collector ingest gate openbao reading-sync; do
    printf '[host.%s]\nenabled = false\n\n' "$c"
  done
  for i in $(seq -w 1 "$n"); do
    printf '[host.extra.bench-%s]\ntemplate = "bench"\n\n' "$i"
  done
} >"$stack/stack.toml"

# run LABEL ARGS...: time one labctl run, keep its `-v` lines.
declare -a rows
run() {
  local label=$1; shift
  local t0 t1 err
  t0=$(date +%s%N)
  err=$("$LABCTL" --stack "$stack/stack.toml" -v "$@" 2>&1 >/dev/null) || { echo "$err" >&2; exit 1; }
  t1=$(date +%s%N)
  local wall=$(( (t1 - t0) / 1000000 ))
  local plan_line apply_line
  plan_line=$(grep -o 'systemd: [0-9]* D-Bus calls in [0-9]* ms' <<<"$err" | head -1)
  apply_line=$(grep -o 'systemd: [0-9]* D-Bus calls to apply in [0-9]* ms' <<<"$err" | head -1 || true)
  local pc pm ac am
  pc=$(awk '{print $2}' <<<"$plan_line"); pm=$(awk '{print $6}' <<<"$plan_line")
  if [ -n "$apply_line" ]; then ac=$(awk '{print $2}' <<<"$apply_line"); am=$(awk '{print $8}' <<<"$apply_line"); else ac=-; am=-; fi
  rows+=("$(printf '| %-38s | %6s | %8s | %6s | %8s | %8s |' "$label" "$pc" "$pm" "$ac" "$am" "$wall")")
}

# The machine is shared and noisy: plans run $reps times each; every run is a row.
reps=${REPS:-3}
for r in $(seq "$reps"); do run "plan, $n new units (#$r)" plan --plane systemd; done
run "apply, $n new units" apply --plane systemd --yes
for r in $(seq "$reps"); do run "plan, $n units, no changes (#$r)" plan --plane systemd; done
sed -i 's/sleep infinity/sleep 86400/' "$stack/systemd-templates/bench.service"
run "apply, $n changed units (restart)" apply --plane systemd --yes
for r in $(seq "$reps"); do run "plan, $n units, no changes (#$r)" plan --plane systemd; done

echo
echo "systemd plane, $n units, $(nproc) cores; observe = connect + read state; apply = after the plan"
printf '| %-38s | %6s | %8s | %6s | %8s | %8s |\n' "run" "calls" "observe" "calls" "apply" "wall"
printf '| %-38s | %6s | %8s | %6s | %8s | %8s |\n' "" "plan" "ms" "apply" "ms" "ms"
printf '|%s|%s|%s|%s|%s|%s|\n' "----------------------------------------" "--------" "----------" "--------" "----------" "----------"
printf '%s\n' "${rows[@]}"
echo
echo "plan: 1 GetAll per unit + 1 ListUnitFilesByPatterns for all + Hello, all sent at once (one round trip)"
echo "apply: stop/start/restart jobs are queued all at once and awaited through JobRemoved; wall time"
echo "includes a fixed 1 s settle before started units' ActiveState is checked. load: $(cut -d' ' -f1-3 /proc/loadavg)"
