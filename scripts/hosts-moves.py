#!/usr/bin/env python3
"""Freshness across hosts, as `cluster-bench --moves` measures it in one process: moves the mock
exchange's ETH/USD price by 2 % (3000 -> 3060 -> 3000 ...), one move every SPACING seconds plus
a random part of up to one observe interval (so moves fall at every phase of the nodes'
observations), while following every node's /v1/prices/stream. Run by scripts/faults-hosts.sh.

  hosts-moves.py --exchange URL --node URL [--node URL ...] --duration S --spacing S --jitter S

Per move:
  verified_ms   move -> the first `verified` event reflecting it (within 0.5 % of the new price)
                at a node that did not start the round (the cluster-bench measure)
  all_ms        move -> every node's stream has shown it (verified or stored): the slowest node
  rounds        rounds started for a deviation over all nodes meanwhile (/metrics)
Prints one JSON object: moves, missed (no verified event before the next move), p50/p99/max of
both, rounds per move (mean, max).
"""
import argparse
import http.client
import json
import queue
import random
import sys
import threading
import time
import urllib.parse
import urllib.request

PRICES = ("3060", "3000")


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    # Nearest rank, as cluster-bench's percentiles.
    rank = max(1, -(-len(values) * p // 100))
    return round(values[int(rank) - 1], 1)


def follow(index, base, events, stop):
    """Reads one node's SSE stream; puts (node index, arrival, event, data) on `events`."""
    url = urllib.parse.urlsplit(base)
    while not stop.is_set():
        try:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
            conn.request("GET", "/v1/prices/stream", headers={"Accept": "text/event-stream"})
            response = conn.getresponse()
            conn.sock.settimeout(None)  # a quiet stream is no error; the thread is a daemon
            kind, data = None, []
            while not stop.is_set():
                line = response.fp.readline()
                if not line:
                    break
                line = line.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "":
                    if kind and data:
                        try:
                            events.put((index, time.monotonic(), kind, json.loads("\n".join(data))))
                        except ValueError:
                            pass
                    kind, data = None, []
        except OSError:
            time.sleep(0.5)


def get(url, timeout=3):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def set_price(exchange, price):
    request = urllib.request.Request(f"{exchange}/mock/price?pair=ETH/USD&price={price}", method="POST")
    urllib.request.urlopen(request, timeout=3).read()


def deviation_rounds(nodes):
    total = 0
    for base in nodes:
        try:
            text = get(base + "/metrics")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("oracle_rounds_started_total{") and 'trigger="deviation"' in line:
                total += float(line.rsplit(" ", 1)[1])
    return int(total)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--node", action="append", required=True)
    parser.add_argument("--duration", type=float, required=True, help="seconds of moves")
    parser.add_argument("--spacing", type=float, required=True)
    parser.add_argument("--jitter", type=float, required=True)
    parser.add_argument("--log", help="append one line per move here")
    args = parser.parse_args()

    addresses = [json.loads(get(base + "/status"))["address"].lower() for base in args.node]
    events, stop = queue.Queue(), threading.Event()
    for index, base in enumerate(args.node):
        threading.Thread(target=follow, args=(index, base, events, stop), daemon=True).start()
    # The market starts where the moves come back to, and the network has a round's time to
    # follow it before the first move.
    set_price(args.exchange, PRICES[1])
    time.sleep(args.spacing)

    moves = []
    log = open(args.log, "a") if args.log else None
    end = time.monotonic() + args.duration
    k = 0
    while time.monotonic() < end:
        target = PRICES[k % 2]
        k += 1
        before = deviation_rounds(args.node)
        set_price(args.exchange, target)
        move = {"at": time.monotonic(), "target": float(target), "verified": None, "seen": {}}
        moves.append(move)
        until = move["at"] + args.spacing + random.random() * args.jitter
        while True:
            left = until - time.monotonic()
            if left <= 0:
                break
            try:
                index, at, kind, data = events.get(timeout=left)
            except queue.Empty:
                break
            try:
                price = float(data.get("price", "nan"))
            except ValueError:
                continue
            if abs(price - move["target"]) / move["target"] >= 0.005:
                continue  # the old market
            if kind == "verified" and move["verified"] is None \
                    and (data.get("origin") or "").lower() != addresses[index]:
                move["verified"] = (at - move["at"]) * 1000
            if kind in ("verified", "price"):
                move["seen"].setdefault(index, (at - move["at"]) * 1000)
        move["rounds"] = deviation_rounds(args.node) - before
        if log:
            log.write(json.dumps({"target": target, "verified_ms": move["verified"],
                                  "seen_ms": move["seen"], "rounds": move["rounds"]}) + "\n")
            log.flush()
    stop.set()

    verified = [m["verified"] for m in moves if m["verified"] is not None]
    every = [max(m["seen"].values()) for m in moves if len(m["seen"]) == len(args.node)]
    rounds = [m["rounds"] for m in moves]
    print(json.dumps({
        "moves": len(moves),
        "missed": len(moves) - len(verified),
        "verified_p50_ms": percentile(verified, 50),
        "verified_p99_ms": percentile(verified, 99),
        "verified_max_ms": round(max(verified), 1) if verified else None,
        "all_nodes_p50_ms": percentile(every, 50),
        "all_nodes_p99_ms": percentile(every, 99),
        "not_all_nodes": len(moves) - len(every),
        "rounds_per_move": round(sum(rounds) / len(rounds), 2) if rounds else None,
        "most_rounds_per_move": max(rounds) if rounds else None,
    }))


if __name__ == "__main__":
    sys.exit(main())
