#!/usr/bin/env bash
# Failover drill: watch gslbd move a name off a failing datacenter and back, with dig.
#
# Everything stays on loopback and is bounded in time (about 15 s with the defaults, never
# more than DRILL_DEADLINE seconds). What it does:
#   1. starts two tiny HTTP health endpoints (python3) on free 127.0.0.1 ports: "primary"
#      and "secondary"; each answers 200 or whatever status code is written in its mode file;
#   2. writes a drill zone (www.drill.test, failover primary -> secondary) into a temp dir and
#      starts gslbd on 127.0.0.1:<free port> (no API, private state dir, no file watch);
#   3. queries www.drill.test with dig in a loop (every DRILL_QUERY_MS), flips the primary's
#      health endpoint to 503, prints when the answers switch, flips it back, prints when they
#      return;
#   4. reports the detection time against the configured fall x interval, stops everything it
#      started by PID and removes the temp dir.
#
# Usage: benches/failover-drill.sh            (from the repository root)
# Knobs (environment): GSLBD=path/to/gslbd (default: target dir's release or debug build,
# built with cargo if missing), DRILL_INTERVAL_MS=500, DRILL_TIMEOUT_MS=250, DRILL_FALL=3,
# DRILL_RISE=2, DRILL_QUERY_MS=20, DRILL_DEADLINE=60.
set -euo pipefail

INTERVAL_MS=${DRILL_INTERVAL_MS:-500}
TIMEOUT_MS=${DRILL_TIMEOUT_MS:-250}
FALL=${DRILL_FALL:-3}
RISE=${DRILL_RISE:-2}
QUERY_MS=${DRILL_QUERY_MS:-20}
DEADLINE=${DRILL_DEADLINE:-60}
JITTER_MS=$((INTERVAL_MS / 10))   # the default: 10 % of the interval
PUBLISH_MS=100                    # the aggregator's publication coalescing interval

command -v dig >/dev/null || { echo "dig is required (dnsutils / bind-utils)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ -z "${GSLBD:-}" ]]; then
    for cand in "$TARGET/release/gslbd" "$TARGET/debug/gslbd"; do
        if [[ -x "$cand" ]]; then GSLBD=$cand; break; fi
    done
fi
if [[ -z "${GSLBD:-}" ]]; then
    echo "building gslbd (cargo build --release) ..." >&2
    (cd "$ROOT" && cargo build --release --quiet --bin gslbd)
    GSLBD=$TARGET/release/gslbd
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gslbd-drill.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { date +%s%3N; }
START_MS=$(now_ms)
rel() { echo $(($1 - START_MS)); }          # ms since the drill started
over_deadline() { (( $(now_ms) - START_MS > DEADLINE * 1000 )); }

# A free loopback port (TCP and UDP both free, for the DNS listener).
free_port() {
    python3 - <<'EOF'
import socket
while True:
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        t.close()
    u.close()
    print(port)
    break
EOF
}

# The health endpoint: GET anything -> the status code in the mode file (200 if empty).
cat >"$WORK/health.py" <<'EOF'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, mode_file = int(sys.argv[1]), sys.argv[2]

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            code = int(open(mode_file).read().strip() or 200)
        except (OSError, ValueError):
            code = 200
        body = b"ok\n" if code < 300 else b"failing\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF

P_PRIMARY=$(free_port)
P_SECONDARY=$(free_port)
P_DNS=$(free_port)
echo 200 >"$WORK/primary.mode"
echo 200 >"$WORK/secondary.mode"
python3 "$WORK/health.py" "$P_PRIMARY" "$WORK/primary.mode" & PIDS+=($!)
python3 "$WORK/health.py" "$P_SECONDARY" "$WORK/secondary.mode" & PIDS+=($!)

# gslbd's first probe decides a target's state: start it only once both endpoints listen.
for port in "$P_PRIMARY" "$P_SECONDARY"; do
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue 2; fi
        sleep 0.05
    done
    echo "health endpoint on port $port did not start" >&2
    exit 1
done

mkdir -p "$WORK/zones" "$WORK/state"
for dc in primary secondary; do
    port_var=P_${dc^^}
    cat >>"$WORK/zones/datacenters.toml" <<EOF
[checks.$dc]
type = "http"
path = "/health"
port = ${!port_var}
interval = "${INTERVAL_MS}ms"
timeout = "${TIMEOUT_MS}ms"
rise = $RISE
fall = $FALL

EOF
done
cat >>"$WORK/zones/datacenters.toml" <<EOF
[datacenters.primary]
addresses = ["192.0.2.1"]
check = "primary"
check-addresses = ["127.0.0.1"]

[datacenters.secondary]
addresses = ["192.0.2.2"]
check = "secondary"
check-addresses = ["127.0.0.1"]
EOF
cat >"$WORK/zones/drill.test.toml" <<EOF
origin = "drill.test."
ttl = 300
[soa]
mname = "ns1.drill.test."
rname = "hostmaster.drill.test."
serial = 1
minimum = 60
[records."@"]
NS = ["ns1"]
[records.ns1]
A = ["127.0.0.1"]

[gslb.www]
ttl = 5
datacenters = ["primary", "secondary"]
policy = "failover"
EOF

"$GSLBD" serve --zones "$WORK/zones" --listen "127.0.0.1:$P_DNS" --api none \
    --state-dir "$WORK/state" --no-watch --udp-threads 1 >"$WORK/gslbd.log" 2>&1 & PIDS+=($!)
GSLBD_PID=$!

# First A address of the answer, or nothing (no answer yet, timeout, error text).
ask() {
    dig +short +tries=1 +time=1 @127.0.0.1 -p "$P_DNS" www.drill.test A 2>/dev/null \
        | grep -E '^[0-9]+(\.[0-9]+){3}$' | head -n1 || true
}

echo "gslbd $GSLBD (pid $GSLBD_PID) on 127.0.0.1:$P_DNS; health endpoints: primary :$P_PRIMARY, secondary :$P_SECONDARY"
echo "check: interval ${INTERVAL_MS} ms, timeout ${TIMEOUT_MS} ms, fall $FALL, rise $RISE, jitter ${JITTER_MS} ms"

# Query until the answer is $1 (printing every change of answer); sets GOT_MS.
QUERIES=0
LAST=""
until_answer() {
    local want=$1 limit_ms=$2 t0 a t
    t0=$(now_ms)
    while :; do
        a=$(ask || true)
        t=$(now_ms)
        QUERIES=$((QUERIES + 1))
        if [[ "$a" != "$LAST" ]]; then
            printf '  t=%6d ms  answer %s\n' "$(rel "$t")" "${a:-(none)}"
            LAST=$a
        fi
        if [[ "$a" == "$want" ]]; then GOT_MS=$t; return 0; fi
        if (( t - t0 > limit_ms )) || over_deadline; then
            echo "  no answer $want within $limit_ms ms" >&2
            tail -n 20 "$WORK/gslbd.log" >&2
            exit 1
        fi
        kill -0 "$GSLBD_PID" 2>/dev/null || { echo "gslbd died" >&2; cat "$WORK/gslbd.log" >&2; exit 1; }
        sleep "0.$(printf '%03d' "$QUERY_MS")"
    done
}

# Keep querying for $1 ms; fail if any answer is not $2.
hold() {
    local dur=$1 want=$2 t0 a
    t0=$(now_ms)
    while (( $(now_ms) - t0 < dur )); do
        a=$(ask || true)
        QUERIES=$((QUERIES + 1))
        if [[ "$a" != "$want" ]]; then
            printf '  t=%6d ms  unexpected answer %s (flap)\n' "$(rel "$(now_ms)")" "${a:-(none)}"
            exit 1
        fi
        sleep "0.$(printf '%03d' "$QUERY_MS")"
    done
}

echo "waiting for gslbd and the first probes ..."
until_answer 192.0.2.1 10000
sleep "$(awk "BEGIN{print ($INTERVAL_MS * 2) / 1000}")"   # a couple of probe rounds
hold 500 192.0.2.1

echo 503 >"$WORK/primary.mode"
FLIP_MS=$(now_ms)
printf '  t=%6d ms  primary health endpoint -> 503\n' "$(rel "$FLIP_MS")"
until_answer 192.0.2.2 $((FALL * INTERVAL_MS * 4 + 5000))
SWITCH_MS=$GOT_MS
hold 1000 192.0.2.2

echo 200 >"$WORK/primary.mode"
BACK_MS=$(now_ms)
printf '  t=%6d ms  primary health endpoint -> 200\n' "$(rel "$BACK_MS")"
until_answer 192.0.2.1 $((RISE * INTERVAL_MS * 4 + 5000))
RETURN_MS=$GOT_MS
hold 500 192.0.2.1

DETECT=$((SWITCH_MS - FLIP_MS))
RECOVER=$((RETURN_MS - BACK_MS))
echo
echo "gslbd's state changes:"
grep -E "datacenter state change" "$WORK/gslbd.log" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/  /' || true
echo
echo "detection: answers switched $DETECT ms after the primary started failing"
echo "           (fall x interval = $((FALL * INTERVAL_MS)) ms; bound fall x interval + jitter + publish = $((FALL * INTERVAL_MS + JITTER_MS + PUBLISH_MS)) ms)"
echo "recovery:  answers returned $RECOVER ms after the primary recovered (rise x interval = $((RISE * INTERVAL_MS)) ms; bound + jitter + publish = $((RISE * INTERVAL_MS + JITTER_MS + PUBLISH_MS)) ms)"
TOTAL=$(( $(now_ms) - START_MS ))
echo "queries:   $QUERIES dig queries in $TOTAL ms: one every ~$((TOTAL / QUERIES)) ms, so each time above is late by up to that much"
