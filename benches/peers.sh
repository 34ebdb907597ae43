#!/usr/bin/env bash
# Benchmark gslbd against peer authoritative servers (knot, gdnsd) with the shared peer lab.
#
#   benches/peers.sh                    # gslbd (1 UDP thread) + knot + gdnsd, kinds static static-ecs nx
#   UDP_THREADS=2 PEERS=external benches/peers.sh    # gslbd alone with 2 UDP sockets/threads
#   KINDS="static dyn-ecs dyn" benches/peers.sh external gdnsd   # GSLB path vs gdnsd geoip
#   API=none PEERS=external benches/peers.sh       # gslbd without the HTTP API (default: API on)
#   REPS=2 DURATION=8 benches/peers.sh  # bench.sh knobs pass through (REPS, DURATION, CLIENTS,
#                                       # OUTSTANDING, LAT_QPS, LAT_DURATION, SERVER_CPU, CLIENT_CPU)
#
# What it does:
#   1. cargo build --release (honours CARGO_TARGET_DIR; default <repo>/target);
#   2. runs the lab's gen-data.sh once if its query files are missing (writes /tmp/gslb-lab);
#   3. checks benches/zones (gslb.test.toml: the lab zone's static data) with `gslbd check`;
#   4. runs $LAB/bench.sh with gslbd as the "external" peer on 127.0.0.1:$EXT_PORT.
# Every server is pinned to CPU $SERVER_CPU (0) and dnsperf to $CLIENT_CPU (1) by bench.sh;
# all traffic is on loopback and every dnsperf run is bounded by -l. The peers are stopped by
# PID by the lab scripts. Results: /tmp/gslb-lab/results/bench-<timestamp>.csv + a table.
#
# Layout: the repo is cloned next to shared/ (CI layout), so the lab is <repo>/../shared/lab/peers;
# override with LAB=/path/to/lab/peers. The peers must be installed first (as root):
#   ../shared/lab/peers/install.sh && ../shared/lab/peers/gen-data.sh
#
# Query kinds: static (static.gslb.test A), static-ecs (same + ECS 193.0.0.0/24), nx (100k
# distinct NXDOMAIN names), dyn (geo.gslb.test A from 127.0.0.1, which the lab mmdb maps to
# US/NA) and dyn-ecs (the same + ECS 193.0.0.0/24, NL/EU). KINDS (default "static static-ecs
# nx") is used for every peer; gdnsd runs with edns_client_subnet on, so the ECS kinds are
# valid for it; knot has no GSLB name, run it with static kinds only.
# gslbd gets --geoip $GEO_MMDB (default the lab's /tmp/gslb-lab/geoip/lab-geo.mmdb, the file
# gdnsd uses) so both servers see the same locations, and --api $API (default 127.0.0.1:8053,
# gslbd's default; API=none turns the HTTP API off). Peers on the command line override PEERS.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
LAB=${LAB:-$REPO/../shared/lab/peers}
[ -x "$LAB/bench.sh" ] || { echo "peer lab not found at $LAB (set LAB=...)" >&2; exit 2; }
LAB=$(cd "$LAB" && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
BIN="$TARGET_DIR/release/gslbd"
UDP_THREADS=${UDP_THREADS:-1}
PORT=${EXT_PORT:-5320}
read -r -a PEERS <<<"${PEERS:-external knot gdnsd}"
[ $# -gt 0 ] && PEERS=("$@")
GEO_MMDB=${GEO_MMDB:-${LAB_WORK:-/tmp/gslb-lab}/geoip/lab-geo.mmdb}
API=${API:-127.0.0.1:8053}

for t in dnsperf dig taskset knotd gdnsd; do
  command -v "$t" >/dev/null || { echo "$t missing: run $LAB/install.sh (root)" >&2; exit 2; }
done

(cd "$REPO" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --bin gslbd)
[ -s "${LAB_WORK:-/tmp/gslb-lab}/queries/nx.txt" ] && [ -s "$GEO_MMDB" ] || "$LAB/gen-data.sh"
"$BIN" check --zones "$REPO/benches/zones"

export EXT_CMD="$BIN serve --zones $REPO/benches/zones --listen 127.0.0.1:$PORT --udp-threads $UDP_THREADS --geoip $GEO_MMDB --api $API"
export EXT_PORT=$PORT
export KINDS=${KINDS:-static static-ecs nx}
echo "gslbd: $EXT_CMD"
echo "peers: ${PEERS[*]}   kinds: $KINDS   reps: ${REPS:-2} x ${DURATION:-10}s"
exec "$LAB/bench.sh" "${PEERS[@]}"
