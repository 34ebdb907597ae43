#!/usr/bin/env python3
"""Summarise one peer-lab CSV (from benches/peers.sh / bench.sh): per peer and kind the mean over
reps of QPS, server CPU %, QPS per server core, p50/p99 at the fixed rate and max RSS, then the
ratios gslbd/peer for every other peer *of the same file* (same run, same noise).

usage: benches/peer-ratios.py [/tmp/gslb-lab/results/bench-YYYYmmdd-HHMMSS.csv]   (default: newest)
"gslbd" is the lab's "external" peer. Also prints the mean "other CPU %" (load from anything
else on the box; 0 on a quiet machine) as the noise figure of the run."""
import collections, csv, glob, os, statistics, sys

files = sys.argv[1:] or sorted(glob.glob(os.environ.get('LAB_WORK', '/tmp/gslb-lab') + '/results/bench-*.csv'))[-1:]
if not files:
    sys.exit('no bench CSV found')
path = files[0]
rows = list(csv.DictReader(open(path)))
p50k = next(k for k in rows[0] if k.startswith('p50_ms'))
p99k = p50k.replace('p50', 'p99')
agg = collections.OrderedDict()
for r in rows:
    agg.setdefault((r['peer'], r['kind']), []).append(r)
mean = lambda rs, k: statistics.mean(float(r[k]) for r in rs)
name = lambda p: 'gslbd' if p == 'external' else p
print(f'{path}')
print('| server | query | QPS (mean) | server CPU % | QPS per server core | p50 / p99 ms | RSS MiB | other CPU % |')
print('|---|---|---|---|---|---|---|---|')
stats = {}
for (peer, kind), rs in agg.items():
    s = dict(qps=mean(rs, 'qps'), cpu=mean(rs, 'srv_cpu_pct'), qpc=mean(rs, 'qps_per_srv_core'),
             p50=mean(rs, p50k), p99=mean(rs, p99k), rss=max(int(r['rss_kib']) for r in rs) / 1024,
             other=mean(rs, 'other_cpu_pct'))
    stats[(peer, kind)] = s
    print(f"| {name(peer)} | {kind} | {s['qps']/1000:.1f}k | {s['cpu']:.0f} | {s['qpc']/1000:.0f}k "
          f"| {s['p50']:.3f} / {s['p99']:.2f} | {s['rss']:.1f} | {s['other']:.0f} |")
peers = [p for p in dict.fromkeys(p for p, _ in agg) if p != 'external']
if any(p == 'external' for p, _ in agg) and peers:
    print()
    print('| query | ' + ' | '.join(f'gslbd/{p} QPS | gslbd/{p} QPS per core | gslbd/{p} RSS' for p in peers) + ' |')
    print('|---|' + '---|---|---|' * len(peers))
    for (peer, kind), g in stats.items():
        if peer != 'external':
            continue
        cells = []
        for p in peers:
            o = stats.get((p, kind))
            cells += [f"{g['qps']/o['qps']:.2f}", f"{g['qpc']/o['qpc']:.2f}", f"{g['rss']/o['rss']:.2f}"] if o else ['-'] * 3
        print(f'| {kind} | ' + ' | '.join(cells) + ' |')
