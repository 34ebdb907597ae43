#!/usr/bin/env bash
# Speed of `gslbd simulate`: each scenario of benches/simulate/ on examples/simulate/zones,
# REPS times (default 3), with the median wall time and simulated client queries per second
# of wall time. Prints the load average before each scenario: run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
cargo build --release -q
BIN=${CARGO_TARGET_DIR:-target}/release/gslbd
printf '%-28s %14s %11s %9s %14s  %s\n' scenario "client queries" decisions "wall (s)" "queries/s" "load average"
for s in benches/simulate/*.toml; do
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  walls=()
  line=""
  for _ in $(seq "$REPS"); do
    line=$("$BIN" simulate --zones examples/simulate/zones --scenario "$s" 2>&1 >/dev/null | grep '^simulated')
    walls+=("$(echo "$line" | sed -E 's/.* in ([0-9.]+) s of wall time.*/\1/')")
  done
  median=$(printf '%s\n' "${walls[@]}" | sort -g | sed -n "$(( (REPS + 1) / 2 ))p")
  queries=$(echo "$line" | sed -E 's/^simulated ([0-9]+) client queries.*/\1/')
  decisions=$(echo "$line" | sed -E 's/.*\(([0-9]+) decisions\).*/\1/')
  rate=$(awk -v q="$queries" -v w="$median" 'BEGIN { printf "%.0f", q / w }')
  printf '%-28s %14s %11s %9s %14s  %s\n' "$(basename "$s" .toml)" "$queries" "$decisions" "$median" "$rate" "$load"
done
