#!/usr/bin/env bash
# Run every fuzz target (or those named after MINUTES) for MINUTES minutes each and print one
# line per target: executions, execs/s, coverage (libFuzzer's `cov` edges and `ft` features),
# corpus size and crashes. Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#
#   scripts/fuzz.sh 10                 # every target, 10 minutes each
#   scripts/fuzz.sh 2 yaml webhook     # two targets
#
# New corpus entries go to $FUZZ_WORK/corpus/<target> (default: the fuzz target dir), never into
# the seeds kept in fuzz/corpus; a crash is saved to fuzz/artifacts/<target>/ and its input belongs
# in fuzz/regressions/<target>/ once fixed (tests/it/fuzz_corpus.rs replays those).
# Runs under `nice`: fuzzing takes a whole core per target.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
minutes=${1:?usage: scripts/fuzz.sh MINUTES [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
fi
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
work=${FUZZ_WORK:-$CARGO_TARGET_DIR/fuzz-work}
nice -n 15 cargo +nightly fuzz build -O --debug-assertions
printf '%-16s %12s %9s %7s %7s %7s %8s\n' target execs execs/s cov ft corpus crashes
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/logs" "artifacts/$t"
  log="$work/logs/$t.log"
  before=$(ls "artifacts/$t" | wc -l)
  # -fork would hide per-run counts; one process, restarted after a crash so the time is spent.
  end=$(( $(date +%s) + minutes * 60 ))
  : >"$log"
  while [ "$(date +%s)" -lt "$end" ]; do
    left=$(( end - $(date +%s) ))
    nice -n 15 cargo +nightly fuzz run -O --debug-assertions "$t" "$work/corpus/$t" "corpus/$t" -- \
      -max_total_time="$left" -print_final_stats=1 -rss_limit_mb=4096 -timeout=30 \
      >>"$log" 2>&1 || true
  done
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s+=$2} END {print s+0}')
  rate=$(( execs / (minutes * 60) ))
  last=$(grep -E '#[0-9]+.*cov:' "$log" | tail -n 1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.*corp: \([0-9]*\).*/\1/p' <<<"$last")
  crashes=$(( $(ls "artifacts/$t" | wc -l) - before ))
  printf '%-16s %12s %9s %7s %7s %7s %8s\n' "$t" "$execs" "$rate" "${cov:--}" "${ft:--}" "${corp:--}" "$crashes"
done
