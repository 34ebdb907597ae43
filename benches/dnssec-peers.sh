#!/usr/bin/env bash
# Signed vs unsigned, same server, same run: gslbd serving a signed copy of benches/zones
# (a fresh ECDSAP256SHA256 CSK for gslb.test), loaded by dnsperf with and without the DO bit,
# with the peer lab's method (shared/lab/peers/bench.sh): server pinned to CPU $SERVER_CPU,
# dnsperf to $CLIENT_CPU, QPS per server core = QPS x 100 / server CPU %.
#
#   benches/dnssec-peers.sh                 # kinds static dyn-ecs nx, REPS=2 DURATION=8
#   KINDS="dyn-ecs" REPS=3 benches/dnssec-peers.sh
#   MAX_SIGS=5000 KINDS=static REPS=1 benches/dnssec-peers.sh   # a lower online signing rate
#
# Per kind: a 2 s warm-up (fills the signature cache for dyn-ecs), then REPS saturating runs
# unsigned and REPS signed (-D), alternating. The signature counters come from the API's
# /metrics (signatures made, cache hits/misses over the signed runs), so `nx` signed also gives
# the cold-cache signing rate per core (100k distinct names: almost every query is a miss).
# Then the answer sizes (bytes, dig) per kind, unsigned and signed.
# Needs the lab (install.sh, gen-data.sh) like benches/peers.sh; loopback only, every load
# bounded by -l, the server and health endpoints are stopped by PID.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
LAB=${LAB:-$REPO/../shared/lab/peers}
[ -f "$LAB/common.sh" ] || { echo "peer lab not found at $LAB (set LAB=...)" >&2; exit 2; }
LAB=$(cd "$LAB" && pwd)
. "$LAB/common.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
BIN="$TARGET_DIR/release/gslbd"
PORT=${EXT_PORT:-5320}
API_PORT=${API_PORT:-8153}
REPS=${REPS:-2}; DURATION=${DURATION:-8}; CLIENTS=${CLIENTS:-16}; OUTSTANDING=${OUTSTANDING:-200}
KINDS=${KINDS:-static dyn-ecs nx}
ECS_HEX=${ECS_HEX:-00011800c10000}
HZ=$(getconf CLK_TCK)
for t in dnsperf dig taskset curl; do command -v "$t" >/dev/null || { echo "$t missing" >&2; exit 2; }; done
[ -s "$WORK/queries/nx.txt" ] && [ -s "$GEO_MMDB" ] || "$LAB/gen-data.sh"

if [ -z "${NO_BUILD:-}" ]; then
  (cd "$REPO" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --bin gslbd)
fi
# Our own copy of the binary: a shared target directory may be rebuilt under us.
TMP=$(mktemp -d /tmp/gslbd-dnssec-bench.XXXXXX)
cp "$BIN" "$TMP/gslbd"; BIN="$TMP/gslbd"
ZONES="$TMP/zones"; mkdir -p "$ZONES"
cp "$REPO"/benches/zones/*.toml "$ZONES"/
key=$("$BIN" keygen gslb.test --dir "$ZONES/keys" | sed -n 's/^; private key (keep it secret): //p')
printf '\n[dnssec]\nkeys = [{ file = "%s" }]\n' "$key" >>"$ZONES/gslb.test.toml"
# MAX_SIGS=n: the zone's max_online_signatures (online signatures per second per thread).
[ -n "${MAX_SIGS:-}" ] && echo "max_online_signatures = $MAX_SIGS" >>"$ZONES/gslb.test.toml"
"$BIN" check --zones "$ZONES"

OUT="$WORK/results/dnssec-$(date +%Y%m%d-%H%M%S).csv"
mkdir -p "$WORK/results"
echo "kind,do,rep,qps,lost_pct,rcode,srv_cpu_pct,perf_cpu_pct,other_cpu_pct,qps_per_srv_core,signatures,cache_hits,cache_misses" >"$OUT"

"$LAB/run-health.sh" start >/dev/null
SPID=
cleanup() {
  if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
    kill -TERM "$SPID"; for _ in $(seq 1 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SPID" 2>/dev/null && kill -KILL "$SPID"
  fi
  "$LAB/run-health.sh" stop
  rm -rf "$TMP"
}
trap cleanup EXIT
taskset -c "$SERVER_CPU" "$BIN" serve --zones "$ZONES" --listen "127.0.0.1:$PORT" --udp-threads 1 \
  --geoip "$GEO_MMDB" --api "127.0.0.1:$API_PORT" --no-watch >"$TMP/log" 2>&1 &
SPID=$!
wait_dns "$PORT"
sleep 3   # health settles

metric() {  # name result-label -> value summed for zone gslb.test.
  curl -s "http://127.0.0.1:$API_PORT/metrics" | awk -v n="$1" -v r="$2" '
    $1 ~ "^"n"\\{" && $1 ~ /zone="gslb.test."/ && (r == "" || $1 ~ "result=\""r"\"") {s += $2} END {printf "%.0f", s}'
}
qargs() {
  case $1 in
    static) echo "-d $LAB/queries/static.txt";;
    dyn-ecs) echo "-d $LAB/queries/dyn.txt -E 8:$ECS_HEX";;
    nx) echo "-d $WORK/queries/nx.txt";;
  esac
}
sys_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }

for kind in $KINDS; do
  for d in "" "-D"; do
    taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$PORT" $(qargs "$kind") $d -l 2 -c "$CLIENTS" -q "$OUTSTANDING" >/dev/null 2>&1
  done
  for rep in $(seq 1 "$REPS"); do
    for d in "" "-D"; do
      s0=$(metric gslbd_dnssec_signatures_total ""); h0=$(metric gslbd_dnssec_cache_lookups_total hit); m0=$(metric gslbd_dnssec_cache_lookups_total miss)
      t0=$(cpu_ticks "$SPID"); b0=$(sys_busy); w0=$(date +%s%N)
      res=$( { /usr/bin/time -f 'PERFCPU %P' taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$PORT" $(qargs "$kind") $d \
               -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" -O suppress=timeouts,congestion; } 2>&1 )
      t1=$(cpu_ticks "$SPID"); b1=$(sys_busy); w1=$(date +%s%N)
      s1=$(metric gslbd_dnssec_signatures_total ""); h1=$(metric gslbd_dnssec_cache_lookups_total hit); m1=$(metric gslbd_dnssec_cache_lookups_total miss)
      el=$(( (w1 - w0) * HZ / 1000000000 ))
      qps=$(awk '/Queries per second/{printf "%.0f",$4}' <<<"$res")
      lost=$(awk '/Queries lost/{gsub(/[()%]/,"",$4); print $4}' <<<"$res")
      rcode=$(awk -F: '/Response codes/{gsub(/^ +/,"",$2); split($2,a," "); print a[1]}' <<<"$res")
      pcpu=$(awk '/PERFCPU/{gsub(/%/,"",$2); print $2}' <<<"$res")
      scpu=$(( (t1 - t0) * 100 / el ))
      ocpu=$(( ( (b1 - b0) - (t1 - t0) ) * 100 / el - ${pcpu:-0} ))
      qpc=$(( scpu > 0 ? ${qps:-0} * 100 / scpu : 0 ))
      echo "$kind,${d:-none},$rep,$qps,$lost,$rcode,$scpu,$pcpu,$ocpu,$qpc,$((s1 - s0)),$((h1 - h0)),$((m1 - m0))" | tee -a "$OUT" >&2
    done
  done
done

echo
echo "results: $OUT"
column -s, -t "$OUT"
DURATION=$DURATION python3 - "$OUT" <<'PY'
import csv, os, sys, statistics as st
rows = list(csv.DictReader(open(sys.argv[1])))
dur = float(os.environ["DURATION"])
print("\nkind      unsigned q/core  signed q/core  ratio  signatures per core-second (signed)")
for kind in dict.fromkeys(r["kind"] for r in rows):
    u = [int(r["qps_per_srv_core"]) for r in rows if r["kind"] == kind and r["do"] == "none"]
    s = [int(r["qps_per_srv_core"]) for r in rows if r["kind"] == kind and r["do"] == "-D"]
    sig = [int(r["signatures"]) / (dur * int(r["srv_cpu_pct"]) / 100.0) for r in rows
           if r["kind"] == kind and r["do"] == "-D" and int(r["srv_cpu_pct"]) > 0]
    print(f"{kind:9} {st.mean(u):15.0f} {st.mean(s):14.0f} {st.mean(s)/st.mean(u):6.2f}  {st.mean(sig):.0f}")
PY

# Does a flood of cache misses stall other queries? p50/p99 of signed static A at a fixed
# LAT_QPS, alone and while a second dnsperf floods new names with DO (every query a signature).
LAT_QPS=${LAT_QPS:-5000}
lat() {  # dnsperf args... -> "p50 p99" in ms
  taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$PORT" "$@" -l 5 -c 4 -Q "$LAT_QPS" -v 2>/dev/null |
    awk '/^> /{print $NF*1000}' | sort -n |
    awk '{a[NR]=$1} END{ if(NR){printf "%.3f %.3f", a[int(NR*0.50)+1], a[int(NR*0.99)]} else printf "NA NA"}'
}
alone=$(lat -d "$LAB/queries/static.txt" -D)
# FLOOD_DO="" floods without DO (no signing) for comparison: queueing behind any saturating
# flood is the same; what signing adds is the difference.
taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/queries/nx.txt" ${FLOOD_DO--D} -l 7 -c 16 -q 200 >/dev/null 2>&1 &
FLOOD=$!
sleep 1
busy=$(lat -d "$LAB/queries/static.txt" -D)
wait "$FLOOD" || true
echo
echo "signed static A at $LAT_QPS QPS, p50/p99 ms: alone $alone; during a flood of new names (nx ${FLOOD_DO--D}) $busy"

echo
echo "answer sizes (bytes): unsigned / signed (DO)"
size() { dig +time=2 +tries=1 +bufsize=1232 "$@" -p "$PORT" @127.0.0.1 | awk '/MSG SIZE/{print $NF}'; }
for q in "static.gslb.test A" "geo.gslb.test A +subnet=193.0.0.0/24" "geo.gslb.test A +subnet=1.0.0.0/24" \
         "geo.gslb.test A" "geo.gslb.test AAAA" "nx-12345678.gslb.test A" "gslb.test DNSKEY" "gslb.test SOA" "static.gslb.test MX"; do
  # shellcheck disable=SC2086
  printf '%-40s %5s / %5s\n' "$q" "$(size $q +nodnssec)" "$(size $q +dnssec)"
done
