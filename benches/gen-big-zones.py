#!/usr/bin/env python3
"""Big zone sets for the memory and load-time figures of docs/benchmarks.md (benches/memory.sh).

    benches/gen-big-zones.py static N OUT   # N static A records: OUT/zones/big.test.toml for gslbd,
                                            # OUT/knot/big.test.zone (the same records) for Knot
    benches/gen-big-zones.py gslb N OUT     # N GSLB names over 8 shared datacenters:
                                            # OUT/zones/{datacenters,lb.test}.toml

Deterministic (the same N gives the same files). Nothing generated is committed.

Static: `h<i>.big.test. A 10.<i>` (one A record per name, the shape of the issue's figure:
"1 M static records"). GSLB: four shapes in turn, the usual production ones (geo rules with a
fallback chain, failover, nearest, weighted), each name with its own pools, so nothing is
shared between names but the datacenters.
"""
import os
import sys

SOA = """[soa]
mname = "ns1.{o}"
rname = "hostmaster.{o}"
serial = 1
minimum = 60

[records."@"]
NS = ["ns1.{o}"]

[records.ns1]
A = ["192.0.2.53"]
"""


def addr(i):
    return "10.%d.%d.%d" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)


def static(n, out):
    os.makedirs(os.path.join(out, "zones"), exist_ok=True)
    os.makedirs(os.path.join(out, "knot"), exist_ok=True)
    with open(os.path.join(out, "zones", "big.test.toml"), "w") as f:
        f.write('origin = "big.test."\nttl = 300\n\n' + SOA.format(o="big.test."))
        for i in range(n):
            f.write('\n[records.h%d]\nA = ["%s"]\n' % (i, addr(i)))
    with open(os.path.join(out, "knot", "big.test.zone"), "w") as f:
        f.write("$ORIGIN big.test.\n$TTL 300\n")
        f.write("@ IN SOA ns1.big.test. hostmaster.big.test. 1 14400 3600 1209600 60\n")
        f.write("@ IN NS ns1.big.test.\nns1 IN A 192.0.2.53\n")
        for i in range(n):
            f.write("h%d IN A %s\n" % (i, addr(i)))


DCS = [
    ("fra", "198.51.100.10", "2001:db8:10::10", 50.11, 8.68),
    ("ams", "198.51.100.20", "2001:db8:20::20", 52.37, 4.90),
    ("lhr", "198.51.100.30", "2001:db8:30::30", 51.47, -0.45),
    ("iad", "192.0.2.10", "2001:db8:40::10", 38.95, -77.45),
    ("sfo", "192.0.2.20", "2001:db8:50::10", 37.62, -122.38),
    ("gru", "192.0.2.30", "2001:db8:80::10", -23.43, -46.47),
    ("sin", "203.0.113.10", "2001:db8:60::10", 1.35, 103.99),
    ("syd", "203.0.113.20", "2001:db8:70::10", -33.87, 151.21),
]

SHAPES = [
    # geo rules with a fallback chain (lb.example.com's `app`)
    """[gslb.{n}]
ttl = 30
rules = [
  {{ match = ["EU", "AF"], pool = "europe" }},
  {{ match = ["AS", "OC"], pool = "asia" }},
  {{ pool = "world" }},
]
pools.europe = {{ datacenters = ["fra", "ams"], policy = "failover", fallback = "world" }}
pools.asia = {{ datacenters = ["sin", "syd"], policy = "nearest", fallback = "world" }}
pools.world = {{ datacenters = ["iad", "sfo", "fra", "sin"], policy = "nearest" }}
""",
    """[gslb.{n}]
datacenters = ["fra", "ams", "lhr"]
policy = "failover"
""",
    """[gslb.{n}]
datacenters = ["iad", "sfo", "fra", "lhr", "sin", "syd"]
policy = "nearest"
""",
    """[gslb.{n}]
ttl = 60
datacenters = [{{ dc = "iad", weight = 3 }}, {{ dc = "sfo", weight = 1 }}, {{ dc = "gru", weight = 1 }}]
policy = "weighted"
""",
]


def gslb(n, out):
    z = os.path.join(out, "zones")
    os.makedirs(z, exist_ok=True)
    with open(os.path.join(z, "datacenters.toml"), "w") as f:
        for name, v4, v6, lat, lon in DCS:
            f.write(
                '[datacenters.%s]\naddresses = ["%s", "%s"]\nlocation = { lat = %s, lon = %s }\n\n'
                % (name, v4, v6, lat, lon)
            )
    with open(os.path.join(z, "lb.test.toml"), "w") as f:
        f.write('origin = "lb.test."\nttl = 300\n\n' + SOA.format(o="lb.test."))
        for i in range(n):
            f.write("\n" + SHAPES[i % len(SHAPES)].format(n="g%d" % i))


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("static", "gslb"):
        sys.exit(__doc__)
    kind, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    (static if kind == "static" else gslb)(n, out)


if __name__ == "__main__":
    main()
