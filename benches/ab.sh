#!/usr/bin/env bash
# A/B: several gslbd command lines against one peer (gdnsd by default), interleaved in rounds,
# so that every variant and the peer see the same noise. For "before/after" comparisons of a
# change (two binaries) and for feature switches (RRL on/off, signed/unsigned zones...).
#
#   benches/ab.sh NAME=CMD [NAME=CMD ...]
#   ROUNDS=3 REPS=2 DURATION=8 KINDS="static dyn-ecs" PEER=gdnsd benches/ab.sh \
#     before="/work/bench-before/gslbd serve --zones benches/zones --udp-threads 1" \
#     after="target/release/gslbd serve --zones benches/zones --udp-threads 1"
#
# Each CMD gets --listen 127.0.0.1:$EXT_PORT --geoip <lab mmdb> --api $API appended (API defaults
# to 127.0.0.1:$API_PORT, API_PORT to 8053; like benches/peers.sh). BASE=NAME also prints every
# variant's ratio to variant NAME (pooled, and per round). Per round: PEER, then every variant,
# each through the lab's bench.sh (server pinned to CPU 0, dnsperf to CPU 1, loopback only, every
# load bounded by -l). Then a table of QPS per server core per variant and kind (mean over all
# rounds and reps) and the ratio variant/PEER of the pooled means, plus each round's ratio (to
# see the spread).
# Results: the bench.sh CSVs under /tmp/gslb-lab/results, listed at the end.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
LAB=${LAB:-$REPO/../shared/lab/peers}
[ -x "$LAB/bench.sh" ] || { echo "peer lab not found at $LAB (set LAB=...)" >&2; exit 2; }
LAB=$(cd "$LAB" && pwd)
ROUNDS=${ROUNDS:-3}
PEER=${PEER:-gdnsd}
PORT=${EXT_PORT:-5320}
API_PORT=${API_PORT:-8053}
API=${API:-127.0.0.1:$API_PORT}
GEO_MMDB=${GEO_MMDB:-${LAB_WORK:-/tmp/gslb-lab}/geoip/lab-geo.mmdb}
export KINDS=${KINDS:-static dyn-ecs}
[ $# -gt 0 ] || { sed -n '2,18p' "$0"; exit 2; }
[ -s "${LAB_WORK:-/tmp/gslb-lab}/queries/nx.txt" ] && [ -s "$GEO_MMDB" ] || "$LAB/gen-data.sh"

names=(); cmds=()
for a in "$@"; do names+=("${a%%=*}"); cmds+=("${a#*=}"); done
list=$(mktemp)
for r in $(seq 1 "$ROUNDS"); do
  "$LAB/bench.sh" "$PEER" >/dev/null
  f=$(ls -t "${LAB_WORK:-/tmp/gslb-lab}"/results/bench-*.csv | head -1); echo "$r,$PEER,$f" >>"$list"
  for i in "${!names[@]}"; do
    (cd "$REPO" && EXT_PORT=$PORT EXT_CMD="${cmds[$i]} --listen 127.0.0.1:$PORT --geoip $GEO_MMDB --api $API" \
      "$LAB/bench.sh" external >/dev/null)
    f=$(ls -t "${LAB_WORK:-/tmp/gslb-lab}"/results/bench-*.csv | head -1); echo "$r,${names[$i]},$f" >>"$list"
  done
  echo "round $r done" >&2
done
python3 - "$list" "$PEER" "${BASE:-}" <<'EOF'
import collections, csv, statistics, sys
listing, peer, base = sys.argv[1], sys.argv[2], sys.argv[3]
qpc = collections.defaultdict(list)          # (name, kind) -> per-rep QPS per core
by_round = collections.defaultdict(dict)     # round -> (name, kind) -> mean
other = []
for line in open(listing):
    rnd, name, path = line.strip().split(',', 2)
    rows = list(csv.DictReader(open(path)))
    per = collections.defaultdict(list)
    for r in rows:
        per[r['kind']].append(float(r['qps_per_srv_core']))
        other.append(float(r['other_cpu_pct']))
    for kind, v in per.items():
        qpc[(name, kind)] += v
        by_round[rnd][(name, kind)] = statistics.mean(v)
kinds = sorted({k for _, k in qpc})
names = list(dict.fromkeys(n for n, _ in qpc))
print(f"QPS per server core (mean of all rounds and reps); other CPU % mean {statistics.mean(other):.0f}")
print('| variant | ' + ' | '.join(kinds) + ' |')
print('|---|' + '---|' * len(kinds))
for n in names:
    print(f'| {n} | ' + ' | '.join(f"{statistics.mean(qpc[(n,k)])/1000:.0f}k" for k in kinds) + ' |')
print()
print(f'| ratio to {peer} (pooled) | ' + ' | '.join(kinds) + ' | per round |')
print('|---|' + '---|' * len(kinds) + '---|')
for n in names:
    if n == peer: continue
    cells = []
    for k in kinds:
        p = qpc.get((peer, k))
        cells.append(f"{statistics.mean(qpc[(n,k)])/statistics.mean(p):.2f}" if p else '-')
    rounds = []
    for rnd, d in sorted(by_round.items()):
        rr = [f"{d[(n,k)]/d[(peer,k)]:.2f}" for k in kinds if (n,k) in d and (peer,k) in d]
        rounds.append('/'.join(rr))
    print(f'| {n} | ' + ' | '.join(cells) + ' | ' + ' '.join(rounds) + ' |')
print()
if base:
    print(f'| ratio to {base} (pooled) | ' + ' | '.join(kinds) + ' | per round |')
    print('|---|' + '---|' * len(kinds) + '---|')
    for n in names:
        if n in (peer, base): continue
        cells = [f"{statistics.mean(qpc[(n,k)])/statistics.mean(qpc[(base,k)]):.2f}" if (base,k) in qpc else '-' for k in kinds]
        rounds = []
        for rnd, d in sorted(by_round.items()):
            rr = [f"{d[(n,k)]/d[(base,k)]:.2f}" for k in kinds if (n,k) in d and (base,k) in d]
            rounds.append('/'.join(rr))
        print(f'| {n} | ' + ' | '.join(cells) + ' | ' + ' '.join(rounds) + ' |')
    print()
print('CSV files:'); print(open(listing).read())
EOF
rm -f "$list"
