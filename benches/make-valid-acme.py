#!/usr/bin/env python3
"""Builds a big acme.json whose every certificate is valid for its own name, for `--all`.

    benches/make-valid-acme.py N OUT [--renewals FILE]

`benches/make-big-acme.py` copies the fixture's entries under new names, so only its
last entry validates: right for selecting one domain, useless for exporting them all.
This one makes an RSA-2048 CA and N leaves (customer1.example.test, ...; every other one with a
SAN), each signed for its own names, in Traefik's v2/v3 layout under one resolver "le":
base64 of PEM, leaf then CA, keys PKCS#8. The leaves share one RSA-2048 key, so the
file builds in seconds while each entry keeps the size of a real RSA-2048 one (about
5.7 kB; 5,000 entries come to about 29 MB, like the fixture-based file).

--renewals FILE also writes, for the first few names, a second certificate each (same
names, new serial, later not-after) as JSON {main: {"certificate", "key"}}: what a
renewal puts in place, for the latency benchmark. Needs the `cryptography` package.
"""

import argparse
import base64
import datetime
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

RENEWED = 5


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def leaf(names, key, ca, ca_key, days):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("n", type=int)
    p.add_argument("out")
    p.add_argument("--renewals")
    args = p.parse_args()

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certsync bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    b64 = lambda b: base64.b64encode(b).decode()
    certs, renewals = [], {}
    for i in range(1, args.n + 1):
        main_name = f"customer{i}.example.test"
        sans = [f"customer{i}-alt.example.test"] if i % 2 == 0 else []
        cert = leaf([main_name] + sans, key, ca, ca_key, 90)
        entry = {
            "domain": {"main": main_name},
            "certificate": b64(pem(cert) + pem(ca)),
            "key": b64(key_pem),
            "Store": "default",
        }
        if sans:
            entry["domain"]["sans"] = sans
        certs.append(entry)
        if args.renewals and i <= RENEWED:
            renewed = leaf([main_name] + sans, key, ca, ca_key, 91)
            renewals[main_name] = {"certificate": b64(pem(renewed) + pem(ca)), "key": b64(key_pem)}
    doc = {"le": {"Account": None, "Certificates": certs}}
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, args.out)
    if args.renewals:
        with open(args.renewals, "w") as f:
            json.dump(renewals, f)
    print(f"{args.out}: {args.n} certificates, {os.path.getsize(args.out) / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
