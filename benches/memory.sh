#!/usr/bin/env bash
# Memory and load time of big zone sets, with Knot serving the same static records as the anchor
# (docs/benchmarks.md, "Big zone sets"). Everything runs on loopback; the zone sets are generated
# by benches/gen-big-zones.py into $OUT (not committed).
#
#   benches/memory.sh                 # 1 M static records and 100 k GSLB names (the issue's sizes)
#   N_STATIC=100000 N_GSLB=10000 RELOADS=3 benches/memory.sh    # a quick run
#
# Figures: start to first answer (process start until the last name of the set answers), RSS
# when idle after the start, the peak RSS during a reload (VmHWM after resetting it through
# /proc/PID/clear_refs), and RSS after each reload. `check` is `gslbd check` on the same set.
set -euo pipefail
cd "$(dirname "$0")/.."
N_STATIC=${N_STATIC:-1000000}
N_GSLB=${N_GSLB:-100000}
RELOADS=${RELOADS:-10}
OUT=${OUT:-/tmp/gslbd-big-zones}
PROFILE=${PROFILE:-release}
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE/gslbd
DNS_PORT=${DNS_PORT:-5391}
KNOT_PORT=${KNOT_PORT:-5392}
PARTS=${PARTS:-knot static gslb}   # a subset for a partial run (the report then has blanks)
has() { [[ " $PARTS " == *" $1 "* ]]; }

if [ -z "${SKIP_BUILD:-}" ]; then
  if [ "$PROFILE" = release ]; then cargo build --release -q; else cargo build -q; fi
fi
mkdir -p "$OUT"
if [ ! -f "$OUT/static-$N_STATIC/zones/big.test.toml" ]; then
  benches/gen-big-zones.py static "$N_STATIC" "$OUT/static-$N_STATIC"
fi
if [ ! -f "$OUT/gslb-$N_GSLB/zones/lb.test.toml" ]; then
  benches/gen-big-zones.py gslb "$N_GSLB" "$OUT/gslb-$N_GSLB"
fi

now() { date +%s.%N; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
mib() { echo $(( ($1 + 512) / 1024 )); }
# wait_answer PORT NAME PID: until NAME answers with an address (or the process died); prints
# the seconds waited since $T0. One Python process polling every 10 ms (a dig every 20 ms took
# 40 % of a core, on a 2-core machine, from the very start it timed).
wait_answer() { benches/wait-answer.py "$1" "$2" "$3" "$T0"; }
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done' EXIT
# Successful reloads so far, from the log (the API's /metrics is large with 100 k names).
generation() { grep -c "reloaded" "$OUT/gslbd.log" || true; }

# reload PID: SIGHUP, wait for the next generation; prints "peak_kib rss_kib seconds settled_kib"
reload() {
  local pid=$1 g t0
  g=$(generation)
  echo 5 > "/proc/$pid/clear_refs"   # resets VmHWM to the current RSS
  t0=$(now)
  kill -HUP "$pid"
  while [ "$(generation)" = "$g" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "process $pid died" >&2; return 1; }
    sleep 0.05
  done
  local hwm rss secs
  hwm=$(kib "$pid" VmHWM); rss=$(kib "$pid" VmRSS); secs=$(echo "$(now) - $t0" | bc)
  # The old model is freed and the heap trimmed 200 ms after the swap: RSS once that is done.
  sleep 1
  echo "$hwm $rss $secs $(kib "$pid" VmRSS)"
}

# --- Knot, the anchor -------------------------------------------------------------------------
knot_start=0; knot_rss=0; static_start=0; static_rss=0; static_hwm=0; static_check=0
gslb_start=0; gslb_rss=0; gslb_hwm=0; gslb_check=0; static_reloads=("0 0 0 0"); gslb_reloads=("0 0 0 0")
last_static="h$((N_STATIC - 1)).big.test"
if has knot; then
K="$OUT/knot-run"; rm -rf "$K"; mkdir -p "$K"
cp "$OUT/static-$N_STATIC/knot/big.test.zone" "$K/"
cat > "$K/knot.conf" <<EOF
server:
    listen: 127.0.0.1@$KNOT_PORT
    rundir: $K
    udp-workers: 2
    tcp-workers: 1
    background-workers: 1
database:
    storage: $K
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: $K
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: big.test
    file: $K/big.test.zone
EOF
T0=$(now); knotd -c "$K/knot.conf" >"$K/log" 2>&1 & KPID=$!; PIDS+=("$KPID")
knot_start=$(wait_answer "$KNOT_PORT" "$last_static" $KPID)
sleep 3
knot_rss=$(kib $KPID VmRSS); knot_hwm=$(kib $KPID VmHWM)
stop $KPID
fi

# --- gslbd, static --------------------------------------------------------------------------
serve() {
  T0=$(now)
  "$BIN" serve --zones "$1" --listen "127.0.0.1:$DNS_PORT" --api none \
    --state-dir "$OUT/state" --no-watch >"$OUT/gslbd.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
}
if has static; then
t0=$(now); "$BIN" check --zones "$OUT/static-$N_STATIC/zones" >/dev/null
static_check=$(echo "$(now) - $t0" | bc)
serve "$OUT/static-$N_STATIC/zones"
static_start=$(wait_answer $DNS_PORT "$last_static" $PID)
sleep 3
static_rss=$(kib $PID VmRSS); static_hwm=$(kib $PID VmHWM)
static_reloads=()
for i in 1 2 3; do static_reloads+=("$(reload $PID)"); done
stop $PID
fi

# --- gslbd, GSLB names ----------------------------------------------------------------------
last_gslb="g$((N_GSLB - 1)).lb.test"
if has gslb; then
t0=$(now); "$BIN" check --zones "$OUT/gslb-$N_GSLB/zones" >/dev/null
gslb_check=$(echo "$(now) - $t0" | bc)
serve "$OUT/gslb-$N_GSLB/zones"
gslb_start=$(wait_answer $DNS_PORT "$last_gslb" $PID)
sleep 3
gslb_rss=$(kib $PID VmRSS); gslb_hwm=$(kib $PID VmHWM)
gslb_reloads=()
for i in $(seq 1 "$RELOADS"); do gslb_reloads+=("$(reload $PID)"); done
stop $PID
fi

# --- report ---------------------------------------------------------------------------------
echo "gslbd $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($PROFILE), knot $(knotd -V | awk '{print $NF}'), $(nproc) cores"
printf '%-34s %10s %10s\n' "" "start s" "RSS MiB"
printf '%-34s %10.2f %10s\n' "knot, $N_STATIC static" "$knot_start" "$(mib "$knot_rss")"
printf '%-34s %10.2f %10s   (peak at start %s MiB, check %.2f s)\n' "gslbd, $N_STATIC static" "$static_start" \
  "$(mib "$static_rss")" "$(mib "$static_hwm")" "$static_check"
printf '%-34s %10.2f %10s   (peak at start %s MiB, check %.2f s)\n' "gslbd, $N_GSLB GSLB names" "$gslb_start" \
  "$(mib "$gslb_rss")" "$(mib "$gslb_hwm")" "$gslb_check"
echo
echo "reloads, static: peak MiB / RSS when logged MiB / seconds / RSS 1 s later MiB"
for r in "${static_reloads[@]}"; do set -- $r; echo "  $(mib "$1") / $(mib "$2") / $3 / $(mib "$4")"; done
echo "reloads, GSLB: peak MiB / RSS when logged MiB / seconds / RSS 1 s later MiB"
for r in "${gslb_reloads[@]}"; do set -- $r; echo "  $(mib "$1") / $(mib "$2") / $3 / $(mib "$4")"; done
echo
python3 - "$knot_rss" "$knot_start" "$static_rss" "$static_start" "$gslb_start" "${static_reloads[0]}" "${gslb_reloads[0]}" "${gslb_reloads[-1]}" <<'P'
import sys
k_rss, k_start, s_rss, s_start, g_start = (float(x) for x in sys.argv[1:6])
s_peak = float(sys.argv[6].split()[0])
g_first, g_last = float(sys.argv[7].split()[1]), float(sys.argv[8].split()[1])
g_first_s, g_last_s = float(sys.argv[7].split()[3]), float(sys.argv[8].split()[3])
div = lambda a, b: a / b if b else float("nan")
rows = [
    ("static RSS / knot RSS", div(s_rss, k_rss), "< 2"),
    ("static reload peak / steady", div(s_peak, s_rss), "< 2"),
    ("static start / knot start", div(s_start, k_start), "< 3"),
    ("GSLB start (s)", g_start, "< 2"),
    ("GSLB RSS after last reload / first", div(g_last, g_first), "< 1.1"),
    ("  the same, 1 s after each reload", div(g_last_s, g_first_s), "< 1.1"),
]
for name, v, target in rows:
    print("%-38s %6.2f   target %s" % (name, v, target))
P
