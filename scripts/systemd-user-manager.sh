#!/usr/bin/env bash
# Start, stop or describe an isolated systemd user manager for tests and benchmarks.
#
#   eval "$(scripts/systemd-user-manager.sh start)"   # starts one, prints `export ...` lines
#   scripts/systemd-user-manager.sh env               # prints them again
#   scripts/systemd-user-manager.sh stop              # kills it (and every unit it started)
#
# The manager gets its own XDG_RUNTIME_DIR (its bus lives there) and XDG_CONFIG_HOME (its unit
# folder is $XDG_CONFIG_HOME/systemd/user). State is kept in $LABCTL_SD_STATE (default
# /tmp/labctl-systemd-user), so `stop` finds what `start` made. tests/it/support/systemd.rs does the
# same from Rust; keep the two in step.
set -euo pipefail

state=${LABCTL_SD_STATE:-/tmp/labctl-systemd-user}
systemd_bin=${SYSTEMD_BIN:-/lib/systemd/systemd}

print_env() {
  [ -f "$state/env" ] || { echo "no manager recorded in $state; run: $0 start" >&2; exit 1; }
  cat "$state/env"
}

case "${1:-}" in
start)
  if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    print_env; exit 0
  fi
  [ -x "$systemd_bin" ] || { echo "$systemd_bin not found: install the Debian packages systemd and dbus-user-session" >&2; exit 1; }
  rm -rf "$state"; mkdir -p "$state/runtime" "$state/config/systemd/user"; chmod 700 "$state/runtime"
  # systemd --user refuses to start unless /run/systemd/system exists; it is only needed at start-up
  # and must not linger (apt's scripts would believe systemd is PID 1). The lock serialises this
  # with the test harness, which does the same dance.
  exec 9>/tmp/labctl-systemd-marker.lock
  flock 9
  made=0; [ -d /run/systemd/system ] || { mkdir -p /run/systemd/system; made=1; }
  # A cgroup of its own (where the cgroup file system allows): managers otherwise share one tree,
  # and one stopping its dbus.service would kill every other manager's bus.
  cg=()
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then roots=(/sys/fs/cgroup); else roots=(/sys/fs/cgroup/unified /sys/fs/cgroup/systemd); fi
  for r in "${roots[@]}"; do
    [ -f "$r/cgroup.procs" ] && mkdir -p "$r/labctl-script-$$" 2>/dev/null && cg+=("$r/labctl-script-$$")
  done
  printf '%s\n' "${cg[@]}" >"$state/cgroups"
  XDG_RUNTIME_DIR=$state/runtime XDG_CONFIG_HOME=$state/config \
    setsid /bin/sh -c 'for d; do echo $$ > "$d/cgroup.procs"; done; exec "$0" --user' "$systemd_bin" "${cg[@]}" \
    >"$state/manager.log" 2>&1 </dev/null 9>&- &
  echo $! >"$state/pid"
  for _ in $(seq 300); do
    [ -S "$state/runtime/bus" ] && [ -S "$state/runtime/systemd/private" ] && break
    sleep 0.1
  done
  [ "$made" = 1 ] && rmdir /run/systemd/system
  flock -u 9
  if ! [ -S "$state/runtime/bus" ]; then
    echo "systemd --user did not come up; its log:" >&2; cat "$state/manager.log" >&2; exit 1
  fi
  cat >"$state/env" <<ENV
export XDG_RUNTIME_DIR=$state/runtime
export XDG_CONFIG_HOME=$state/config
export DBUS_SESSION_BUS_ADDRESS=unix:path=$state/runtime/bus
ENV
  print_env
  ;;
env) print_env ;;
stop)
  if [ -f "$state/pid" ]; then
    pid=$(cat "$state/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  if [ -f "$state/cgroups" ]; then
    while read -r d; do [ -n "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done <"$state/cgroups"
  fi
  rm -rf "$state"
  ;;
*) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
