#!/usr/bin/env python3
"""Builds a big acme.json from the real one Traefik wrote (fixtures/acme.json).

    benches/make-big-acme.py N OUT [--fixture fixtures/acme.json]

The file has one resolver, "le" (with the fixture's Account), holding N certificates:
N-1 copies of the fixture's RSA2048 entries under new names (customer1.example.test,
customer2.example.test, ...; every other copy keeps a SAN, as the original does), and
last the fixture's own "www.example.test" entry, untouched. The copies' names do not
match their leaves' SANs, so only that last entry validates: select `--domain
www.example.test`, which is the last entry of the file, the worst case for a reader
that stops at the first match.

The fixture's RSA2048 entries are about 5.7 kB each, so 5,000 entries come to about
29 MB, the size of a real Traefik store of that many certificates (Traefik's default
RSA4096 keys would make each entry about 9 kB; the 29 MB figure is the reference).
The layout is Traefik's: v2/v3 field names, two-space indentation, "Store": "default".
"""

import argparse
import copy
import json
import os
import sys

SELECTED = "www.example.test"


def build(fixture: dict, n: int) -> dict:
    le = fixture["le"]
    originals = le["Certificates"]
    last = next(c for c in originals if c["domain"]["main"] == SELECTED)
    templates = [c for c in originals if c["domain"]["main"] != SELECTED] + [last]
    certs = []
    for i in range(1, n):
        t = templates[(i - 1) % len(templates)]
        c = copy.deepcopy(t)
        main = f"customer{i}.example.test"
        c["domain"] = {"main": main}
        if t["domain"].get("sans"):
            c["domain"]["sans"] = [f"customer{i}-alt.example.test"]
        certs.append(c)
    if n > 0:
        certs.append(copy.deepcopy(last))
    return {"le": {"Account": le["Account"], "Certificates": certs}}


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("n", type=int, help="number of certificates (the last is www.example.test)")
    p.add_argument("out", help="where to write the acme.json")
    p.add_argument("--fixture", default=os.path.join(here, "..", "fixtures", "acme.json"))
    args = p.parse_args()
    with open(args.fixture) as f:
        fixture = json.load(f)
    doc = build(fixture, args.n)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, args.out)
    size = os.path.getsize(args.out)
    print(f"{args.out}: {args.n} certificates, {size / 1e6:.1f} MB; select --domain {SELECTED}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
