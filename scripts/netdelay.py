#!/usr/bin/env python3
"""One-way delay for the packets of one network namespace, in user space (for kernels without
netem). iptables sends the packets to an NFQUEUE; this program holds each one for the delay of
the link it takes, then accepts it. Run by scripts/hosts.sh inside the namespace:

  netdelay.py --queue 0 --delay 10.77.0.12=70 --delay 10.77.0.1=60 [--delay ...]

A packet leaving the namespace (OUTPUT) is held for the delay of its destination address, one
arriving (INPUT) for that of its source; addresses without a --delay pass at once. One delay per
address keeps every flow in order: a packet is released after the ones queued before it for the
same peer. The heap is released in time order whatever the peer, so a long-delayed packet never
blocks a short one. Needs the NetfilterQueue package (PyPI; libnetfilter-queue-dev to build it).

Prints one line when its queue is bound ("netdelay: queue N bound"), and at exit (SIGTERM, SIGINT)
the packets it held and the largest lateness of a release past its due time, in ms.
"""
import argparse
import heapq
import ipaddress
import select
import signal
import sys
import time

from netfilterqueue import NetfilterQueue

# Netfilter hook numbers, as the queue reports them.
LOCAL_IN, LOCAL_OUT = 1, 3


def parse_delay(text):
    address, _, ms = text.partition("=")
    return ipaddress.IPv4Address(address).packed, float(ms) / 1000.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--delay", type=parse_delay, action="append", default=[],
                        metavar="ADDRESS=MS", help="one-way delay to and from ADDRESS")
    parser.add_argument("--max-len", type=int, default=20000,
                        help="packets the kernel queue may hold (past it, it drops)")
    args = parser.parse_args()
    delays = dict(args.delay)

    held = []  # (due, seq, packet): seq keeps equal due times in arrival order
    stats = {"seq": 0, "held": 0, "passed": 0, "late": 0.0}

    def queued(packet):
        payload = packet.get_payload()
        # IPv4 header: source at bytes 12..16, destination at 16..20.
        peer = payload[16:20] if packet.hook == LOCAL_OUT else payload[12:16]
        delay = delays.get(peer)
        if not delay:
            stats["passed"] += 1
            packet.accept()
            return
        stats["seq"] += 1
        stats["held"] += 1
        heapq.heappush(held, (time.monotonic() + delay, stats["seq"], packet))

    running = [True]

    def stop(*_):
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    queue = NetfilterQueue()
    queue.bind(args.queue, queued, max_len=args.max_len)
    fd = queue.get_fd()
    print(f"netdelay: queue {args.queue} bound, {len(delays)} delayed peers", flush=True)
    try:
        while running[0]:
            now = time.monotonic()
            while held and held[0][0] <= now:
                due, _, packet = heapq.heappop(held)
                stats["late"] = max(stats["late"], now - due)
                packet.accept()
            timeout = max(0.0, held[0][0] - time.monotonic()) if held else 1.0
            try:
                ready, _, _ = select.select([fd], [], [], timeout)
            except InterruptedError:
                continue
            if ready:
                queue.run(block=False)
    finally:
        # Whatever is still held goes out now: the namespace is being torn down or healed.
        while held:
            heapq.heappop(held)[2].accept()
        queue.unbind()
        print(f"netdelay: held {stats['held']} packets, passed {stats['passed']}, "
              f"latest release {stats['late'] * 1000:.1f} ms past due", flush=True)


if __name__ == "__main__":
    sys.exit(main())
