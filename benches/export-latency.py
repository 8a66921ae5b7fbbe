#!/usr/bin/env python3
"""Renewal latency of a running `certsync --all` daemon over a big acme.json.

    benches/export-latency.py CERTSYNC ACME RENEWALS OUT [--rounds 40]

Starts `CERTSYNC --acme ACME --all --out-dir OUT --metrics-listen off` (OUT already
filled by a first pass, or filled now), waits for its first pass, then, ROUNDS times,
rewrites ACME in place as Traefik does (truncate and write, same inode) with one entry
renewed (RENEWALS, from make-valid-acme.py, alternating with the original), and
measures from the end of that write to the new fullchain.pem in place (a new inode at
OUT/<name>/fullchain.pem). Prints p50/p95/max and checks that no other folder changed.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("certsync")
    p.add_argument("acme")
    p.add_argument("renewals")
    p.add_argument("out")
    p.add_argument("--rounds", type=int, default=40)
    args = p.parse_args()

    with open(args.acme) as f:
        doc = json.load(f)
    with open(args.renewals) as f:
        renewals = json.load(f)
    certs = doc["le"]["Certificates"]
    index = {c["domain"]["main"]: i for i, c in enumerate(certs)}
    originals = {m: dict(certs[index[m]]) for m in renewals}
    names = sorted(renewals)

    log = open(os.path.join(os.path.dirname(os.path.abspath(args.out)), "export-daemon.log"), "w")
    daemon = subprocess.Popen(
        [args.certsync, "--acme", args.acme, "--all", "--out-dir", args.out, "--metrics-listen", "off"],
        stderr=log,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        last = os.path.join(args.out, f"customer{len(certs)}.example.test", "fullchain.pem")
        deadline = time.monotonic() + 600
        while not os.path.exists(last):
            if time.monotonic() > deadline or daemon.poll() is not None:
                print("the first pass did not finish", file=sys.stderr)
                return 1
            time.sleep(0.05)
        time.sleep(2)  # the first pass's tail (metrics, reloads) and idle
        others = os.path.join(args.out, "customer4999.example.test", "fullchain.pem")
        others_ino = os.stat(others).st_ino

        samples = []
        for r in range(args.rounds):
            name = names[r % len(names)]
            renewed = (r // len(names)) % 2 == 0
            entry = certs[index[name]]
            src = renewals[name] if renewed else originals[name]
            entry["certificate"], entry["key"] = src["certificate"], src["key"]
            path = os.path.join(args.out, name, "fullchain.pem")
            before = os.stat(path).st_ino
            data = json.dumps(doc, indent=2).encode()
            with open(args.acme, "r+b") as f:
                f.truncate(0)
                f.write(data)
            end = time.monotonic()
            while os.stat(path).st_ino == before:
                if time.monotonic() - end > 10:
                    print(f"round {r}: {name} was not rewritten within 10 s", file=sys.stderr)
                    return 1
                time.sleep(0.0002)
            samples.append((time.monotonic() - end) * 1000)
            time.sleep(0.3)
        if os.stat(others).st_ino != others_ino:
            print("a folder that was not renewed was rewritten", file=sys.stderr)
            return 1
        samples.sort()
        pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
        print(
            f"renewal -> new files in place, {len(samples)} rounds: "
            f"p50 {pick(0.5):.1f} ms, p95 {pick(0.95):.1f} ms, max {samples[-1]:.1f} ms"
        )
        with open(f"/proc/{daemon.pid}/status") as f:
            rss = [l for l in f if l.startswith(("VmHWM", "VmRSS"))]
        print("daemon " + ", ".join(l.split()[0] + " " + str(round(int(l.split()[1]) / 1024, 1)) + " MB" for l in rss))
        return 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
