#!/usr/bin/env bash
# DNS over TLS against plain TCP, and the TLS handshake rate, per server core (dnsperf).
#
#   benches/encrypted.sh                      # REPS=3 DURATION=10 CLIENTS=16 OUTSTANDING=100
#   KINDS="tcp dot" REPS=5 benches/encrypted.sh
#
# Kinds, all `static.gslb.test A` from benches/zones (NOERROR, 1 answer), same server process:
#   tcp      plain TCP, CLIENTS persistent connections (dnsperf -m tcp)
#   dot      DNS over TLS, CLIENTS persistent connections (dnsperf -m dot)
#   dot-hs   DNS over TLS, one query per connection (-O num-queries-per-conn=1): every query
#            pays a TCP connect and a TLS handshake, so QPS = handshakes per second
#   doh      DNS over HTTPS (HTTP/2, POST), CLIENTS persistent connections (dnsperf -m doh);
#            not in the default KINDS: dnsperf 2.10's DoH client (Debian's) completes only the first few
#            of the queries it has in flight (it counts every HTTP 200, but times the DNS
#            answers out; DNS-OARC/dnsperf#240), so its figure would be dnsperf's, not ours
# gslbd runs in release with --udp-threads 1, pinned to CPU $SERVER_CPU (0), dnsperf to CPU
# $CLIENT_CPU (1); loopback only; every load is bounded by -l; the server is stopped by PID.
# Certificate: a self-signed ECDSA P-256 one made here with openssl (what most DoT servers use).
# Per run: QPS, server CPU %, dnsperf CPU %, other CPU % (everything else on the machine:
# other processes, kernel work charged to neither), and QPS per server core = QPS x 100 /
# server CPU %. For dot-hs also the share of handshakes that resumed a TLS session (from
# gslbd_connections_resumed_total) and full handshakes per second.
# Output: a CSV under $OUT_DIR (/tmp/gslbd-bench) and a summary table (means over REPS).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
REPS=${REPS:-3}; DURATION=${DURATION:-10}; CLIENTS=${CLIENTS:-16}; OUTSTANDING=${OUTSTANDING:-100}
KINDS=${KINDS:-tcp dot dot-hs}
SERVER_CPU=${SERVER_CPU:-0}; CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-5340}; DOT_PORT=${DOT_PORT:-8540}; API_PORT=${API_PORT:-8541}; DOH_PORT=${DOH_PORT:-8542}
OUT_DIR=${OUT_DIR:-/tmp/gslbd-bench}
HZ=$(getconf CLK_TCK)
command -v dnsperf >/dev/null || { echo "dnsperf not found (Debian package dnsperf)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "openssl not found" >&2; exit 2; }

cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/gslbd
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"; for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$work/key.pem" -out "$work/cert.pem" -subj "/CN=dns.test" \
  -addext "subjectAltName=DNS:dns.test,IP:127.0.0.1" 2>/dev/null
echo "static.gslb.test A" > "$work/queries.txt"

taskset -c "$SERVER_CPU" "$BIN" serve --zones benches/zones --listen "127.0.0.1:$PORT" \
  --udp-threads 1 --api "127.0.0.1:$API_PORT" --no-watch \
  --listen-tls "127.0.0.1:$DOT_PORT" --listen-https "127.0.0.1:$DOH_PORT" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
  --tls-max-connections-per-client 100000 --tls-max-connections 100000 \
  --tcp-max-per-client 100000 --tcp-max-connections 100000 --tcp-max-queries 0 --tcp-lifetime 1h \
  >"$work/gslbd.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  dig +time=1 +tries=1 +short @127.0.0.1 -p "$PORT" static.gslb.test A 2>/dev/null | grep -q . && break
  sleep 0.2
done
kill -0 "$pid" || { cat "$work/gslbd.log" >&2; exit 1; }

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }           # utime+stime, all threads
sys_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }    # user+nice+system+irq+softirq
metric() { curl -s "127.0.0.1:$API_PORT/metrics" | awk -v s="$1" '$1==s{print $2}'; }
args_for() {
  case $1 in
    tcp) echo "-m tcp -p $PORT";;
    dot) echo "-m dot -p $DOT_PORT";;
    dot-hs) echo "-m dot -p $DOT_PORT -O num-queries-per-conn=1";;
    doh) echo "-m doh -p $DOH_PORT -O doh-method=POST";;
  esac
}

mkdir -p "$OUT_DIR"
OUT="$OUT_DIR/encrypted-$(date +%Y%m%d-%H%M%S).csv"
echo "kind,rep,secs,qps,lost_pct,srv_cpu_pct,perf_cpu_pct,other_cpu_pct,qps_per_srv_core,conns,resumed_pct" > "$OUT"
conns='gslbd_connections_opened_total{listener="dns_tls"}'
resumed='gslbd_connections_resumed_total{listener="dns_tls"}'
for kind in $KINDS; do
  taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 $(args_for "$kind") -d "$work/queries.txt" \
    -l 1 -c "$CLIENTS" -q "$OUTSTANDING" >/dev/null 2>&1 || true          # warm-up
  for rep in $(seq 1 "$REPS"); do
    c0=$(metric "$conns"); r0=$(metric "$resumed")
    t0=$(cpu_ticks "$pid"); b0=$(sys_busy); w0=$(date +%s%N)
    res=$( { /usr/bin/time -f 'PERFCPU %P' taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 $(args_for "$kind") \
             -d "$work/queries.txt" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" \
             -O suppress=timeouts,congestion; } 2>&1 )
    t1=$(cpu_ticks "$pid"); b1=$(sys_busy); w1=$(date +%s%N)
    c1=$(metric "$conns"); r1=$(metric "$resumed")
    el=$(( (w1 - w0) * HZ / 1000000000 ))
    qps=$(awk '/Queries per second/{printf "%.0f",$4}' <<<"$res")
    lost=$(awk '/Queries lost/{gsub(/[()%]/,"",$4); print $4}' <<<"$res")
    pcpu=$(awk '/PERFCPU/{gsub(/%/,"",$2); print $2}' <<<"$res")
    scpu=$(( (t1 - t0) * 100 / el ))
    ocpu=$(( ( (b1 - b0) - (t1 - t0) ) * 100 / el - ${pcpu:-0} ))
    qpc=$(( scpu > 0 ? ${qps:-0} * 100 / scpu : 0 ))
    nc=$(( ${c1%.*} - ${c0%.*} )); nr=$(( ${r1%.*} - ${r0%.*} ))
    rpct=$(( nc > 0 ? nr * 100 / nc : 0 ))
    secs=$(awk -v n=$((w1 - w0)) 'BEGIN{printf "%.2f", n/1e9}')
    echo "$kind,$rep,$secs,$qps,$lost,$scpu,$pcpu,$ocpu,$qpc,$nc,$rpct" | tee -a "$OUT" >&2
  done
done

echo
echo "results: $OUT"
python3 - "$OUT" <<'EOF'
import collections, csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = collections.defaultdict(list)
for r in rows:
    by[r['kind']].append(r)
m = lambda rs, k: statistics.mean(float(r[k]) for r in rs)
print('| kind | QPS | server CPU % | dnsperf CPU % | other CPU % | QPS per server core | new connections/s | resumed |')
print('|---|---|---|---|---|---|---|---|')
for kind, rs in by.items():
    spread = f"{min(float(r['qps_per_srv_core']) for r in rs)/1000:.1f}k-{max(float(r['qps_per_srv_core']) for r in rs)/1000:.1f}k"
    print(f"| {kind} | {m(rs,'qps')/1000:.1f}k | {m(rs,'srv_cpu_pct'):.0f} | {m(rs,'perf_cpu_pct'):.0f} | "
          f"{m(rs,'other_cpu_pct'):.0f} | {m(rs,'qps_per_srv_core')/1000:.1f}k ({spread}) | "
          f"{statistics.mean(float(r['conns'])/float(r['secs']) for r in rs):.0f} | {m(rs,'resumed_pct'):.0f} % |")
EOF
