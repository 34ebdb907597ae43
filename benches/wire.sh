#!/usr/bin/env bash
# Server-bound benchmark of gslbd over AF_XDP and over sockets, with the shared lab's
# wire-bench.sh: each server alone in a network namespace behind a veth pair, pinned to CPU 0,
# loaded by Knot's AF_XDP generator kxdpgun on CPU 1 (see the header of wire-bench.sh).
#
#   benches/wire.sh                     # both runs below, REPS=3 DURATION=5
#   MODES=xdp benches/wire.sh           # only run 1
#   REPS=2 DURATION=5 KINDS="static nx" benches/wire.sh
#   GSLBD_BIN=/path/to/gslbd benches/wire.sh   # skip the build (e.g. to start on a quiet machine)
#
# Run 1: gdnsd, knot, gslbd over AF_XDP (`--listen-xdp gwsrv@53`), knot over AF_XDP (last, as
#        wire-bench.sh asks: right after an XDP program is detached the next peer's first run
#        may see no replies).
# Run 2: gdnsd, knot, gslbd over sockets (one UDP thread).
# Each run writes $LAB_WORK/results/wire-<timestamp>.csv; compare peers within one run (the
# machine is shared). gslbd gets the lab's GeoIP file, so `dyn` asks the same GSLB question as
# gdnsd's geoip plugin; knot serves static and nx only.
# Rate limiting: kxdpgun sends everything from one address (193.0.0.2), so gslbd's default RRL
# (200 responses a second per bucket) would limit the run to slips and drops. The peers run
# without RRL (their defaults); gslbd runs with GSLBD_RRL (default `--rrl-rate 1000000
# --rrl-exempt none`: every response takes the limiter's whole path, none is limited), so its
# figures include what RRL costs. GSLBD_RRL="" measures the defaults, i.e. the limited flood.
#
# Needs root (namespaces, veth, AF_XDP), the lab's peers (../shared/lab/peers/install.sh) and
# kxdpgun (knot-dnsutils). Writes only under $LAB_WORK (default /tmp/gslb-lab) and a copy of the
# binary in a temporary directory (a shared CARGO_TARGET_DIR may be rebuilt meanwhile).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
LAB=${LAB:-$REPO/../shared/lab/peers}
[ -x "$LAB/wire-bench.sh" ] || { echo "peer lab not found at $LAB (set LAB=...)" >&2; exit 2; }
LAB=$(cd "$LAB" && pwd)
export LAB_WORK=${LAB_WORK:-/tmp/gslb-lab}
export REPS=${REPS:-3} DURATION=${DURATION:-5}
read -r -a MODES <<<"${MODES:-xdp sockets}"
GEO_MMDB=${GEO_MMDB:-$LAB_WORK/geoip/lab-geo.mmdb}
for t in kxdpgun knotd gdnsd dig taskset; do
  command -v "$t" >/dev/null || { echo "$t missing: run $LAB/install.sh (root)" >&2; exit 2; }
done
[ -s "$LAB_WORK/queries/nx.txt" ] && [ -s "$GEO_MMDB" ] || "$LAB/gen-data.sh"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ -n "${GSLBD_BIN:-}" ]; then
  cp "$GSLBD_BIN" "$TMP/gslbd"   # a release build with --features xdp, made beforehand
else
  TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
  (cd "$REPO" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --features xdp --bin gslbd)
  cp "$TARGET_DIR/release/gslbd" "$TMP/gslbd"
fi
"$TMP/gslbd" check --zones "$REPO/benches/zones"

GSLBD_RRL=${GSLBD_RRL---rrl-rate 1000000 --rrl-exempt none}
BASE="$TMP/gslbd serve --zones $REPO/benches/zones --geoip $GEO_MMDB --listen @ADDR@ --api none --udp-threads 1 --no-watch $GSLBD_RRL"
for m in "${MODES[@]}"; do
  case $m in
    xdp)
      echo "== run: gslbd over AF_XDP vs knot over AF_XDP (and gdnsd, knot over sockets)"
      EXT_CMD="$BASE --listen-xdp gwsrv@53" "$LAB/wire-bench.sh" gdnsd knot external knot-xdp;;
    sockets)
      echo "== run: gslbd over sockets vs gdnsd and knot over sockets"
      EXT_CMD="$BASE" "$LAB/wire-bench.sh" gdnsd knot external;;
    *) echo "unknown mode $m (xdp, sockets)" >&2; exit 2;;
  esac
done
