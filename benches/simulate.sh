#!/usr/bin/env bash
# Speed of `gslbd simulate`: each scenario of benches/simulate/ on examples/simulate/zones,
# REPS times (default 3), with the median wall time, the median CPU time (user + system) and
# simulated client queries per second of each. Prints the load average before each scenario:
# on a shared machine the wall time includes waiting for a core, the CPU time does not.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
cargo build --release -q --bin gslbd
BIN=${CARGO_TARGET_DIR:-target}/release/gslbd
median() { sort -g | sed -n "$(( (REPS + 1) / 2 ))p"; }
printf '%-24s %12s %10s %8s %8s %12s %12s  %s\n' scenario "client qs" decisions "wall s" "cpu s" "qs/s wall" "qs/s cpu" "load average"
for s in ${SCENARIOS:-benches/simulate/*.toml}; do
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  walls=() cpus=()
  line=""
  for _ in $(seq "$REPS"); do
    tf=$(mktemp)
    line=$(/usr/bin/time -f '%e %U %S' -o "$tf" "$BIN" simulate --zones examples/simulate/zones \
      --scenario "$s" 2>&1 >/dev/null | grep '^simulated')
    walls+=("$(awk '{print $1}' "$tf")")
    cpus+=("$(awk '{printf "%.2f", $2 + $3}' "$tf")")
    rm -f "$tf"
  done
  wall=$(printf '%s\n' "${walls[@]}" | median)
  cpu=$(printf '%s\n' "${cpus[@]}" | median)
  queries=$(echo "$line" | sed -E 's/^simulated ([0-9]+) client queries.*/\1/')
  decisions=$(echo "$line" | sed -E 's/.*\(([0-9]+) decisions\).*/\1/')
  qw=$(awk -v q="$queries" -v w="$wall" 'BEGIN { printf "%.0f", q / w }')
  qc=$(awk -v q="$queries" -v w="$cpu" 'BEGIN { printf "%.0f", q / w }')
  printf '%-24s %12s %10s %8s %8s %12s %12s  %s\n' "$(basename "$s" .toml)" "$queries" "$decisions" "$wall" "$cpu" "$qw" "$qc" "$load"
done
