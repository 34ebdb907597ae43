#!/usr/bin/env python3
"""Waits until a DNS server on 127.0.0.1:PORT answers NAME/A with at least one address, or until
process PID has died; prints the seconds since T0 (a `date +%s.%N` value) when it answers.

    benches/wait-answer.py PORT NAME PID T0

One process polling every 10 ms, for benches/memory.sh: a `dig` started every 20 ms took about
40 % of a core, which on a 2-core machine slowed the very start it was timing.
"""
import os
import socket
import struct
import sys
import time


def query(name, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)


def answered(resp, qid):
    if len(resp) < 12:
        return False
    rid, flags, _qd, an = struct.unpack(">HHHH", resp[:8])
    return rid == qid and flags & 0x8000 and flags & 0x000F == 0 and an > 0


def main():
    port, name, pid, t0 = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    qid = 0
    while True:
        qid = (qid + 1) & 0xFFFF
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.01)
        try:
            s.sendto(query(name, qid), ("127.0.0.1", port))
            while True:
                resp = s.recv(4096)
                if answered(resp, qid):
                    print("%.3f" % (time.time() - t0))
                    return 0
        except OSError:  # refused (nothing listening yet) or timed out
            pass
        finally:
            s.close()
        try:
            os.kill(pid, 0)
        except OSError:
            print("process %d died" % pid, file=sys.stderr)
            return 1
        time.sleep(0.01)


if __name__ == "__main__":
    sys.exit(main())
