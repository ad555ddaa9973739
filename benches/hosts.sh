#!/usr/bin/env bash
# Benchmark (not a test): plan and apply a stack of 10 units per host on 1, 3 and 8 hosts, each a
# systemd user manager behind an sshd on loopback (as ../shared/scripts/hosts-on-loopback.sh and
# tests/it/support/hosts.rs start them), side by side in one run; print wall times and the
# ratio of 8 hosts to 1.
#
#   benches/hosts.sh              LABCTL=path/to/labctl to skip the release build; REPS=5;
#                                 SSH_OPTIONS='-o KexAlgorithms=curve25519-sha256' to try others
#
# Target (issue 26): a plan of 8 hosts within 1.5x a plan of one (hosts are observed at once,
# each over one ssh master connection). Wall times include labctl's start-up, the first ssh
# handshake of every host, and this machine's own manager, which every plan also observes. On
# loopback every host's sshd, shell and manager share this machine's cores with labctl; the
# `labctl CPU` columns are labctl's own and its ssh commands' until they return (a master
# connection, once it runs apart, is not counted): about what a run costs where it runs when
# the hosts are real machines.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${REPS:-5}
units=10
sizes=(1 3 8)
max=8

if [ -z "${LABCTL:-}" ]; then
  cargo build --release --quiet --bin labctl
  LABCTL=${CARGO_TARGET_DIR:-target}/release/labctl
fi

work=$(mktemp -d)
sshd_pid=
cleanup() {
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
  for d in "$work"/local "$work"/h*; do
    [ -d "$d" ] && LABCTL_SD_STATE=$d scripts/systemd-user-manager.sh stop >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# One manager per host (each in a cgroup of its own: the same unit names on every host never
# collide), then this machine's, whose bus address the script's environment gets (a manager
# started after that would register on this bus instead of its own).
for i in $(seq "$max"); do
  env -u DBUS_SESSION_BUS_ADDRESS LABCTL_SD_STATE="$work/h$i" scripts/systemd-user-manager.sh start >/dev/null
done
eval "$(env -u DBUS_SESSION_BUS_ADDRESS LABCTL_SD_STATE="$work/local" scripts/systemd-user-manager.sh start)"

# One sshd for every host; each host's key selects its manager's environment, and a HOME of its
# own: Debian's bash reads ~/.bashrc for every command ssh runs, and this machine's root's runs
# `pyenv init` (0.2 s a command), which a host's login shell would not.
ssh=$work/ssh
mkdir -p "$ssh" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$ssh/hostkey"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
: >"$ssh/authorized_keys"; : >"$ssh/config"
for i in $(seq "$max"); do
  h=$work/h$i
  ssh-keygen -q -t ed25519 -N '' -f "$ssh/id$i"
  printf 'environment="XDG_RUNTIME_DIR=%s",environment="XDG_CONFIG_HOME=%s",environment="DBUS_SESSION_BUS_ADDRESS=unix:path=%s/bus",environment="HOME=%s" %s\n' \
    "$h/runtime" "$h/config" "$h/runtime" "$h" "$(cat "$ssh/id$i.pub")" >>"$ssh/authorized_keys"
  printf 'Host h%s\n  HostName 127.0.0.1\n  Port %s\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n' \
    "$i" "$port" "$ssh/id$i" >>"$ssh/config"
done
cat >"$ssh/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $ssh/hostkey
PidFile none
AuthorizedKeysFile $ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
PermitUserEnvironment yes
UsePAM no
StrictModes no
MaxSessions 50
MaxStartups 100
CFG
/usr/sbin/sshd -D -f "$ssh/sshd_config" -E "$ssh/sshd.log" &
sshd_pid=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
export LABCTL_SSH_COMMAND="ssh -F $ssh/config ${SSH_OPTIONS:-}"

# One stack per size, `n` hosts with 10 units each (the stack's name in the units' names, so the
# stacks never own each other's units).
for n in "${sizes[@]}"; do
  s=$work/stack$n
  mkdir -p "$s/systemd-templates"
  cat >"$s/systemd-templates/bench.service" <<'UNIT'
[Unit]
Description=labctl benchmark unit {{ component }} on {{ host }}

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=default.target
UNIT
  {
    printf '[stack]\nname = "hosts%s"\n\n' "$n"
    for c in collectors grafana loki minio otel-collector postgres prometheus tempo thanos; do
      printf '[kube.%s]\nenabled = false\n\n' "$c"
    done
    printf '[host]\nscope = "user"\n\n'
    for c in proxy collector ingest gate openbao reading-sync; do
      printf '[host.%s]\nenabled = false\n\n' "$c"
    done
    on=$(seq -f '"h%g"' 1 "$n" | paste -sd, -)
    for u in $(seq -w 1 "$units"); do
      printf '[host.extra.n%s-%s]\ntemplate = "bench"\nhosts = [%s]\n\n' "$n" "$u" "$on"
    done
    for i in $(seq "$n"); do
      printf '[hosts.h%s]\nssh = "h%s"\nscope = "user"\n\n' "$i" "$i"
    done
  } >"$s/stack.toml"
done

# ms COMMAND...: the wall time of one labctl run and the CPU time of labctl and its ssh clients,
# in ms, as `wall/cpu` (exit 0 or 2 is fine).
ms() {
  local code=0
  /usr/bin/time -f '%e %U %S' -o "$work/time" "$LABCTL" "$@" >/dev/null 2>"$work/err" || code=$?
  if [ "$code" != 0 ] && [ "$code" != 2 ]; then cat "$work/err" >&2; exit 1; fi
  awk '{printf "%d/%d\n", $1 * 1000, ($2 + $3) * 1000}' "$work/time"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }

# The transport's own floor: `ssh hN true` to n hosts at once (fresh connections, as a plan's
# first contact is), with the same options.
raw() {
  local t0 t1
  t0=$(date +%s%N)
  for i in $(seq "$1"); do $LABCTL_SSH_COMMAND -o BatchMode=yes "h$i" true & done
  wait
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}

declare -A plan_new apply_new plan_same ssh_raw
# Sizes interleaved in every round, so that the machine's noise falls on all of them alike.
for r in $(seq "$reps"); do
  for n in "${sizes[@]}"; do
    plan_new[$n]+="$(ms --stack "$work/stack$n/stack.toml" plan --plane systemd) "
    ssh_raw[$n]+="$(raw "$n")/0 "
  done
done
for n in "${sizes[@]}"; do
  apply_new[$n]=$(ms --stack "$work/stack$n/stack.toml" apply --plane systemd --yes --settle 0s)
done
for r in $(seq "$reps"); do
  for n in "${sizes[@]}"; do
    plan_same[$n]+="$(ms --stack "$work/stack$n/stack.toml" plan --plane systemd --detailed-exitcode) "
  done
done

# med FIELD "wall/cpu ...": the median of one field (1: wall, 2: CPU).
med() { tr ' ' '\n' <<<"$2" | grep . | cut -d/ -f"$1" | median; }
echo
echo "$units units per host, $(nproc) cores, median of $reps plans; apply: one run (10 units per host created, enabled, started; --settle 0s); ssh: ${LABCTL_SSH_COMMAND}"
printf '| %-5s | %-14s | %-14s | %-14s | %-14s | %-14s | %-14s |\n' hosts "plan new, wall" "labctl CPU" "apply, wall" "labctl CPU" "plan same, wall" "labctl CPU"
printf '| %-5s | %-14s | %-14s | %-14s | %-14s | %-14s | %-14s |\n' ----- -------------- -------------- -------------- -------------- -------------- --------------
for n in "${sizes[@]}"; do
  printf '| %-5s | %-14s | %-14s | %-14s | %-14s | %-14s | %-14s |\n' "$n" \
    "$(med 1 "${plan_new[$n]}") ms" "$(med 2 "${plan_new[$n]}") ms" \
    "$(med 1 "${apply_new[$n]}") ms" "$(med 2 "${apply_new[$n]}") ms" \
    "$(med 1 "${plan_same[$n]}") ms" "$(med 2 "${plan_same[$n]}") ms"
done
awk -v p1="$(med 1 "${plan_new[1]}")" -v p8="$(med 1 "${plan_new[8]}")" \
    -v s1="$(med 1 "${plan_same[1]}")" -v s8="$(med 1 "${plan_same[8]}")" \
    -v a1="$(med 1 "${apply_new[1]}")" -v a8="$(med 1 "${apply_new[8]}")" \
    -v c1="$(med 2 "${plan_new[1]}")" -v c8="$(med 2 "${plan_new[8]}")" \
    -v r1="$(med 1 "${ssh_raw[1]}")" -v r8="$(med 1 "${ssh_raw[8]}")" 'BEGIN {
  printf "ratio 8/1 (wall): plan %.2fx, plan with no changes %.2fx, apply %.2fx (target: plan <= 1.5x); plan labctl CPU %.2fx\n", p8/p1, s8/s1, a8/a1, c8/c1
  printf "the transport alone, `ssh hN true` to every host at once: 1 host %d ms, 8 hosts %d ms (%.2fx)\n", r1, r8, r8/r1 }'
