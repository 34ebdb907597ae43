#!/usr/bin/env bash
# Zonemaster conformance run against gslbd serving the shipped example zone.
#
#   benches/zonemaster.sh                 # example.com from zones/, NS on 127.0.0.1 + 127.0.0.2
#   ZONES=path ZONE=name NS="ns1.name/127.0.0.1 ns2.name/127.0.0.2" benches/zonemaster.sh
#   benches/zonemaster.sh -- --test basic  # anything after -- goes to zonemaster-cli
#   SIGN=1 benches/zonemaster.sh           # signed: keys made for ZONE (and SIGN_ZONES), DS given
#                                          # to Zonemaster as the parent's (--ds), DNSSEC tests run
#
# Builds gslbd (release; honours CARGO_TARGET_DIR), starts it on a free port on 127.0.0.1 and
# 127.0.0.2 (UDP+TCP), runs the lab's run-zonemaster.sh (<repo>/../shared/lab/conformance, or
# CONF=...), stops gslbd by its PID and exits with run-zonemaster.sh's status:
#   0 = nothing at WARNING+ beyond the loopback artefacts ADDRESS01/ADDRESS02/ZONE01,
#   1 = other WARNING/ERROR/CRITICAL messages, 2 = usage / zonemaster-cli missing.
# Needs: apt-get install -y --no-install-recommends zonemaster-cli
# Every query stays on loopback (the lab's ZmLoopbackShim drops anything else).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
CONF=${CONF:-$REPO/../shared/lab/conformance}
[ -x "$CONF/run-zonemaster.sh" ] || { echo "conformance lab not found at $CONF (set CONF=...)" >&2; exit 2; }
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
PROFILE=${PROFILE:-release}          # PROFILE=debug reuses the test build (CI)
BIN="$TARGET_DIR/$PROFILE/gslbd"
ZONES=${ZONES:-$REPO/zones}
ZONE=${ZONE:-example.com}
read -r -a NS <<<"${NS:-ns1.example.com/127.0.0.1 ns2.example.com/127.0.0.2}"
extra=(); if [ "${1:-}" = "--" ]; then extra=("$@"); fi

command -v zonemaster-cli >/dev/null || { echo "zonemaster-cli missing (apt-get install -y --no-install-recommends zonemaster-cli)" >&2; exit 2; }
if [ "$PROFILE" = release ]; then
  (cd "$REPO" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --bin gslbd)
else
  (cd "$REPO" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --bin gslbd)
fi
# SIGN=1: a copy of the zones with a fresh CSK per signed zone (no private key lives in the
# repo); a signed child's DS goes to its delegation in the parent; ZONE's DS is handed to
# Zonemaster as the parent's DS.
if [ -n "${SIGN:-}" ]; then
  SIGNED=$(mktemp -d /tmp/gslbd-zonemaster-signed.XXXXXX)
  cp "$ZONES"/*.toml "$SIGNED"/
  zone_file() { grep -l "^origin = \"$1.\"" "$SIGNED"/*.toml | head -1; }
  for z in ${SIGN_ZONES:-} "$ZONE"; do
    f=$(zone_file "$z"); [ -n "$f" ] || { echo "no zone file for $z" >&2; exit 2; }
    key=$("$BIN" keygen "$z" --dir "$SIGNED/keys" | sed -n 's/^; private key (keep it secret): //p')
    printf '\n[dnssec]\nkeys = [{ file = "%s" }]\n' "$key" >>"$f"
    parent=${z#*.}
    pf=$(zone_file "$parent" || true)
    if [ "$z" != "$ZONE" ] && [ -n "$pf" ]; then
      ds=$("$BIN" ds "$z" --zones "$SIGNED" | awk '{print $5" "$6" "$7" "$8; exit}')
      label=${z%%.*}
      sed -i "s|^\[records\.$label\]\(.*\)$|[records.$label]\1\nDS = [\"$ds\"]|" "$pf"
    fi
  done
  DS=$("$BIN" ds "$ZONE" --zones "$SIGNED" | awk '{print $5","$6","$7","$8; exit}')
  ZONES=$SIGNED
  [ ${#extra[@]} -eq 0 ] && extra=(--)
  extra+=(--ds "$DS")
  echo "signed zones in $ZONES; parent DS for $ZONE: $DS"
fi
"$BIN" check --zones "$ZONES"

# A port free for UDP and TCP on both 127.0.0.1 and 127.0.0.2 (ephemeral range, checked by binding).
PORT=${PORT:-$(python3 - <<'P'
import socket, random
for _ in range(200):
    p = random.randint(20000, 32000); socks = []
    try:
        for a in ("127.0.0.1", "127.0.0.2"):
            for t in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(socket.AF_INET, t); socks.append(s); s.bind((a, p))
        print(p); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
P
)}
[ -n "$PORT" ] || { echo "no free port found" >&2; exit 2; }

LOG=$(mktemp /tmp/gslbd-zonemaster.XXXXXX.log)
"$BIN" serve --api none --no-watch --zones "$ZONES" --listen "127.0.0.1:$PORT" --listen "127.0.0.2:$PORT" >"$LOG" 2>&1 &
PID=$!
stop() {
  if kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$PID" 2>/dev/null && kill -KILL "$PID" 2>/dev/null || true
  fi
  wait "$PID" 2>/dev/null || true
}
trap stop EXIT
echo "gslbd pid $PID on 127.0.0.1:$PORT and 127.0.0.2:$PORT (log $LOG)"

up=
for _ in $(seq 1 100); do
  if dig +time=1 +tries=1 +short @127.0.0.1 -p "$PORT" "$ZONE" SOA | grep -q . \
     && dig +time=1 +tries=1 +short @127.0.0.2 -p "$PORT" "$ZONE" SOA | grep -q .; then up=1; break; fi
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.2
done
[ -n "$up" ] || { echo "gslbd did not answer on port $PORT" >&2; cat "$LOG" >&2; exit 2; }

start=$(date +%s)
set +e
"$CONF/run-zonemaster.sh" "$PORT" "$ZONE" "${NS[@]}" "${extra[@]}"
rc=$?
set -e
echo "== zonemaster exit $rc after $(( $(date +%s) - start )) s"
exit "$rc"
