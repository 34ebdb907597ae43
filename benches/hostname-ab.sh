#!/usr/bin/env bash
# Hostname targets vs addresses, same build, same run: the lab's `geo.gslb.test` (what the
# dyn and dyn-ecs kinds query) answered three ways, interleaved with gdnsd through
# benches/ab.sh, QPS per server core:
#
#   address  benches/zones as it is: geo over the address datacenters dc-eu/dc-na/dc-ap
#   cname    geo is benches/zones' `cname`: the same decision over their hostname twins,
#            answered as a CNAME to the chosen target (outside our zones: the CNAME alone)
#   flat     geo is `flat`: the same, flattened to the targets' resolved addresses
#
# The targets resolve (in the background, never on the query path) through a second gslbd
# serving benches/upstream/ on 127.0.0.1:$UP_PORT (pinned to the client CPU; it answers a
# handful of refreshes per TTL). Every variant gets --resolver 127.0.0.1:$UP_PORT, so the
# three differ only in the answer shape. Ratios to `address` are printed (BASE=address).
#
#   benches/hostname-ab.sh                         # ROUNDS=3 REPS=2 DURATION=8 KINDS="dyn-ecs dyn"
#   ROUNDS=2 KINDS=dyn-ecs benches/hostname-ab.sh
#
# Needs the peer lab as benches/ab.sh does; builds release (honours CARGO_TARGET_DIR) unless
# NO_BUILD=1, and runs a private copy of the binary. Loopback only; processes stopped by PID.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
UP_PORT=${UP_PORT:-5321}
CLIENT_CPU=${CLIENT_CPU:-1}
export KINDS=${KINDS:-dyn-ecs dyn} BASE=address
if [ -z "${NO_BUILD:-}" ]; then
  (cd "$REPO" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --bin gslbd)
fi
TMP=$(mktemp -d /tmp/gslbd-hostname-ab.XXXXXX)
cp "$TARGET_DIR/release/gslbd" "$TMP/gslbd"
BIN="$TMP/gslbd"
for v in cname flat; do
  mkdir -p "$TMP/$v"
  cp "$REPO"/benches/zones/*.toml "$TMP/$v/"
  sed -i -e 's/^\[gslb\.geo\]/[gslb.geo-address]/' -e "s/^\\[gslb\\.$v\\]/[gslb.geo]/" "$TMP/$v/gslb.test.toml"
  "$BIN" check --zones "$TMP/$v" >/dev/null
done
UPID=
cleanup() {
  if [ -n "$UPID" ] && kill -0 "$UPID" 2>/dev/null; then
    kill -TERM "$UPID"; for _ in $(seq 1 50); do kill -0 "$UPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$UPID" 2>/dev/null && kill -KILL "$UPID"
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
taskset -c "$CLIENT_CPU" "$BIN" serve --zones "$REPO/benches/upstream" --listen "127.0.0.1:$UP_PORT" \
  --udp-threads 1 --api none --no-watch >"$TMP/upstream.log" 2>&1 &
UPID=$!
for _ in $(seq 1 100); do
  dig +time=1 +tries=1 +short @127.0.0.1 -p "$UP_PORT" dc-eu.lb.upstream.test A | grep -q . && break
  sleep 0.1
done
RES="--resolver 127.0.0.1:$UP_PORT"
"$REPO/benches/ab.sh" \
  address="$BIN serve --zones $REPO/benches/zones --udp-threads 1 $RES" \
  cname="$BIN serve --zones $TMP/cname --udp-threads 1 $RES" \
  flat="$BIN serve --zones $TMP/flat --udp-threads 1 $RES"
