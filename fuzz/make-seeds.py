#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora, fuzz/seeds/<target>/, from fixtures/ and from
hand-made edge cases. Run again after the fixtures change:

    python3 fuzz/make-seeds.py

acme_stream seeds are acme.json files (whole, cut short, odd but valid, invalid);
bundle_validate seeds are `certificate NUL key NUL domain`, in PEM text. Keys are the
fixtures' (made for these tests by a throwaway Pebble CA, not secrets); other key
forms are converted with the openssl command.
"""

import base64
import json
import pathlib
import shutil
import subprocess
import textwrap

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"

FIXTURE = (ROOT / "fixtures" / "acme.json").read_bytes()
FIXTURE_V1 = (ROOT / "fixtures" / "acme-v1.json").read_bytes()


def write(target, name, data):
    path = SEEDS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def entry(main, cert="Q0VSVA==", key="S0VZ", extra=""):
    return ('{"domain": {"main": "%s", "sans": ["alt.%s"]}, "certificate": "%s", '
            '"key": "%s", "Store": "default"%s}' % (main, main, cert, key, extra))


def acme_seeds():
    t = "acme_stream"
    write(t, "fixture-v3.json", FIXTURE)
    write(t, "fixture-v1.json", FIXTURE_V1)
    small = '{"le": {"Account": {"Email": "a@b", "n": -12.5e+3}, "Certificates": [%s, %s]}, "le-ec": {"Certificates": [%s]}}' % (
        entry("a.test"), entry("b.test"), entry("*.a.test"))
    write(t, "small-v3.json", small)
    write(t, "small-v1.json", '{"Account": {"Email": "x"}, "Certificates": [{"Domain": {"Main": "a.test", "SANs": null}, "Certificate": "Q0VSVA==", "Key": "S0VZ"}], "HTTPChallenges": {}}')
    # Cut short: inside a base64 payload, between fields, inside a key, after a
    # backslash, inside a literal, and inside a number after '-', '.', 'e', 'e+'.
    for name, cut in [
        ("cut-in-certificate.json", FIXTURE.index(b'"certificate"') + 400),
        ("cut-after-comma.json", FIXTURE.index(b'"key"') - 1),
        ("cut-in-field-name.json", FIXTURE.index(b'"Store"') + 3),
        ("cut-in-second-resolver.json", FIXTURE.index(b'"le-ec"') + 20),
        ("cut-last-byte.json", len(FIXTURE) - 1),
    ]:
        write(t, name, FIXTURE[:cut])
    for name, text in [
        ("cut-number-minus.json", '{"le": {"Account": {"n": -'),
        ("cut-number-dot.json", '{"le": {"Account": {"n": [1.'),
        ("cut-number-e.json", '{"Account": {"n": 2e'),
        ("cut-number-sign.json", '{"Account": {"n": 2.5E+'),
        ("cut-number-in-store.json", '{"le": {"Certificates": [{"Store": -'),
        ("cut-literal.json", '{"le": {"Account": nu'),
        ("cut-escape.json", '{"le": {"Account": "\\u00'),
        ("cut-backslash.json", '{"le": {"Account": "\\'),
        ("cut-typed-number.json", '{"le": {"Certificates": [{"domain": {"main": -'),
    ]:
        write(t, name, text)
    # Whitespace across the scanner's 64 kB buffer, and CRLF lines.
    pad = " \t\r\n" * 4300
    write(t, "huge-whitespace.json", pad + '{' + pad + '"le"' + pad + ':' + pad + '{"Certificates": [' + entry("a.test") + ']}' + pad + '}' + pad)
    write(t, "crlf.json", small.replace(", ", ",\r\n  "))
    write(t, "only-whitespace.json", "  \n\t ")
    write(t, "empty.json", "")
    # Deep nesting where values are skipped, and where they are typed.
    write(t, "deep-account.json", '{"le": {"Account": ' + "[" * 3000 + "]" * 3000 + ', "Certificates": [' + entry("a.test", extra=', "x": ' + '{"a":' * 300 + '1' + '}' * 300) + "]}}")
    write(t, "deep-resolver.json", '{"le": ' + "[" * 200 + "]" * 200 + "}")
    # Escapes: in skipped strings, in names (typed: left to serde_json), surrogates.
    write(t, "escapes-skipped.json", '{"le": {"Account": {"e": "\\u00e9\\n\\"\\/\\\\\\b\\f\\r\\t\\ud83d\\ude00\\ud800"}, "Certificates": [%s]}}' % entry("a.test"))
    write(t, "escapes-typed.json", '{"l\\u0065": {"Certificates": [{"domain": {"main": "a\\u002etest", "sans": ["\\ud83d\\ude00"]}, "certificate": "Q0\\/VSVA==", "key": "S0VZ"}]}}')
    write(t, "escape-lone-surrogate.json", '{"le": {"Certificates": [{"domain": {"main": "a\\udc00"}, "certificate": "Q0VSVA==", "key": "S0VZ"}]}}')
    write(t, "escape-bad.json", '{"le": {"Account": "\\x"}}')
    # Odd but valid shapes, and invalid ones.
    write(t, "nulls-and-empties.json", '{"le": {"Certificates": [{"domain": null, "certificate": "Q0VSVA==", "key": "S0VZ"}, {"domain": {"main": ""}}, {"domain": {"main": "a"}, "certificate": null, "key": ""}]}, "empty": {"Certificates": null}, "nothing": null}')
    write(t, "duplicate-fields.json", '{"le": {"Certificates": [{"domain": {"main": "a", "Main": "b"}, "certificate": "Q0VSVA==", "key": "S0VZ", "Key": "x"}]}}')
    write(t, "duplicate-certificates.json", '{"Certificates": null, "Certificates": [{"Domain": {"Main": "a.test"}, "Certificate": "Q0VSVA==", "Key": "S0VZ"}]}')
    write(t, "wrong-types.json", '{"le": {"Certificates": [{"domain": {"main": 5, "sans": "x"}, "certificate": ["Q0VSVA=="], "key": {}}]}}')
    write(t, "other-json-secret.json", '{"database": {"password": "hunter2"}, "token": "hunter2"}')
    write(t, "trailing.json", '{} x')
    write(t, "bom.json", b"\xef\xbb\xbf{}")
    write(t, "utf8-names.json", '{"ré": {"Certificates": [%s]}}' % entry("é.test"))
    write(t, "invalid-utf8.json", b'{"le": {"Account": "\xff", "Certificates": [{"domain": {"main": "a\xc3"}, "certificate": "Q0VSVA==", "key": "S0VZ"}]}}')
    write(t, "control-char.json", '{"le": {"Certificates": [{"domain": {"main": "a\tb"}, "certificate": "Q0VSVA==", "key": "S0VZ"}]}}')
    write(t, "numbers.json", '{"Account": [0, -0, 1.5e-300, 1E400, -12345678901234567890123, 0.0e0], "Certificates": []}')
    write(t, "number-leading-zero.json", '{"Account": [01]}')


def pem_blocks(text):
    blocks, current = [], []
    for line in text.splitlines(keepends=True):
        current.append(line)
        if line.startswith("-----END"):
            blocks.append("".join(current))
            current = []
    return blocks


def openssl(*args, stdin):
    return subprocess.run(["openssl", *args], input=stdin.encode(), capture_output=True,
                          check=True).stdout.decode()


def bundle_seeds():
    t = "bundle_validate"
    doc = json.loads(FIXTURE)
    entries = {}
    for resolver, value in doc.items():
        for c in value["Certificates"]:
            entries[(resolver, c["domain"]["main"])] = (
                base64.b64decode(c["certificate"]).decode(),
                base64.b64decode(c["key"]).decode(),
            )
    rsa_cert, rsa_key = entries[("le", "turn.example.test")]
    ec_cert, ec_key = entries[("le-ec", "turn.example.test")]
    wild_cert, wild_key = entries[("le-ec", "*.example.test")]
    leaf, intermediate = pem_blocks(rsa_cert)[:2]

    def seed(name, cert, key, domain="turn.example.test"):
        write(t, name, "\0".join([cert, key, domain]))

    seed("rsa.pem", rsa_cert, rsa_key)
    seed("rsa-san.pem", rsa_cert, rsa_key, "turn-alt.example.test")
    seed("ec.pem", ec_cert, ec_key)
    seed("ec-wildcard.pem", wild_cert, wild_key, "coturn.example.test")
    seed("rsa-pkcs1-key.pem", rsa_cert, openssl("rsa", "-traditional", stdin=rsa_key))
    seed("ec-sec1-key.pem", ec_cert, openssl("ec", stdin=ec_key))
    seed("encrypted-key.pem", ec_cert, openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:x", stdin=ec_key))
    seed("mismatch-rsa-cert-ec-key.pem", rsa_cert, ec_key)
    seed("mismatch-ec-keys.pem", ec_cert, wild_key)
    seed("not-covered.pem", rsa_cert, rsa_key, "other.example.test")
    seed("leaf-only.pem", leaf, rsa_key)
    seed("chain-out-of-order.pem", intermediate + leaf, rsa_key)
    seed("intermediate-first-only.pem", intermediate, rsa_key)
    seed("unterminated-private-key.pem", rsa_cert + "-----BEGIN PRIVATE KEY-----\n" + rsa_key.splitlines()[1] + "\n", rsa_key)
    seed("private-key-in-chain.pem", rsa_cert + rsa_key, rsa_key)
    lines = intermediate.splitlines(keepends=True)
    seed("truncated-intermediate.pem", leaf + "".join(lines[: len(lines) // 2]), rsa_key)
    seed("truncated-intermediate-end.pem", leaf + "".join(lines[:-1]), rsa_key)
    seed("truncated-leaf.pem", leaf[: len(leaf) // 2], rsa_key)
    seed("text-around-blocks.pem", "subject=CN turn\n" + leaf + "issuer\n" + intermediate + "trailer\n", "Bag Attributes\n" + rsa_key + "junk")
    seed("crlf.pem", rsa_cert.replace("\n", "\r\n"), rsa_key.replace("\n", "\r\n"))
    seed("two-keys-wrong-first.pem", rsa_cert, ec_key + rsa_key)
    seed("cert-in-key-file.pem", rsa_cert, leaf + rsa_key)
    seed("mismatched-end-label.pem", leaf.replace("-----END CERTIFICATE-----", "-----END X509 CRL-----"), rsa_key)
    # Found by fuzzing: text before BEGIN on its line. The pem crate reads the block,
    # OpenSSL and rustls do not: the fullchain written must be clean PEM.
    seed("junk-before-begin.pem", "\ufffd" + rsa_cert, rsa_key)
    seed("text-after-begin.pem", rsa_cert.replace("-----\n", "-----\t", 1), rsa_key)
    # Found by fuzzing: one letter changed in the RSA key's first CRT exponent; the
    # public half still matches (OpenSSL signs with it, ring signs garbage).
    at = 1210
    seed("damaged-rsa-crt-key.pem", rsa_cert, rsa_key[:at] + ("s" if rsa_key[at] != "s" else "t") + rsa_key[at + 1:])
    # Found by fuzzing: the leaf's key algorithm OID changed (rsaEncryption's 113549
    # arc merged into a longer one), its bits still the key's modulus and exponent.
    # OpenSSL cannot load such a public key; certsync must refuse the pair.
    der = base64.b64decode("".join(leaf.splitlines()[1:-1]))
    rsa_oid = bytes.fromhex("06092a864886f70d010101")
    at = der.index(rsa_oid) + 7
    odd = der[:at] + b"\x8a" + der[at + 1:]
    odd_leaf = "-----BEGIN CERTIFICATE-----\n" + "\n".join(textwrap.wrap(base64.b64encode(odd).decode(), 64)) + "\n-----END CERTIFICATE-----\n"
    seed("leaf-key-under-unknown-algorithm.pem", odd_leaf + intermediate, rsa_key)
    # Found by fuzzing: an EC leaf whose named curve became an IA5String.
    ec_leaf, ec_intermediate = pem_blocks(ec_cert)[:2]
    der = base64.b64decode("".join(ec_leaf.splitlines()[1:-1]))
    at = der.index(bytes.fromhex("06072a8648ce3d020106")) + 9
    odd = der[:at] + b"\x16" + der[at + 1:]
    odd_leaf = "-----BEGIN CERTIFICATE-----\n" + "\n".join(textwrap.wrap(base64.b64encode(odd).decode(), 64)) + "\n-----END CERTIFICATE-----\n"
    seed("ec-leaf-curve-not-an-oid.pem", odd_leaf + ec_intermediate, ec_key)
    # Found by fuzzing: the same leaf's algorithm itself tagged as text.
    at = der.index(bytes.fromhex("06072a8648ce3d0201"))
    odd = der[:at] + b"\x16" + der[at + 1:]
    odd_leaf = "-----BEGIN CERTIFICATE-----\n" + "\n".join(textwrap.wrap(base64.b64encode(odd).decode(), 64)) + "\n-----END CERTIFICATE-----\n"
    seed("ec-leaf-algorithm-not-an-oid.pem", odd_leaf + ec_intermediate, ec_key)
    # Found by fuzzing: a BEGIN line cut short. A PEM reader that quotes the labels it
    # could not pair quotes key text with them.
    body = rsa_key.splitlines()[1:-1]
    seed("key-begin-label-across-lines.pem", rsa_cert,
         "-----BEGIN PRIVATE \n" + body[7] + "\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n"
         + body[8] + "\n-----END PRIVATE KEY-----\n")
    seed("empty.pem", "", "")
    seed("no-blocks.pem", "hello", "world")


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    acme_seeds()
    bundle_seeds()


if __name__ == "__main__":
    main()
