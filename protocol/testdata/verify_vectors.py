#!/usr/bin/env python3
"""Independent check of Guanxi's protocol test vectors, written from protocol/SPEC.md.

Uses only the PyPI packages `cryptography` (Ed25519) and `rfc8785` (JCS), plus the
standard library. Nothing here is derived from the Rust code.

usage: verify_vectors.py [vectors.json]    exit 0 when every check passes, 1 otherwise
"""

import base64
import hashlib
import json
import sys
from decimal import Decimal
from pathlib import Path

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# SPEC.md §3: domain prefixes of the signing input.
ENVELOPE_PREFIX = b"guanxi/v1/envelope\x00"
RECEIPT_PREFIX = b"guanxi/v1/receipt\x00"
ENVELOPE_MEMBERS = {"v", "id", "from", "to", "seq", "prev", "created", "kind", "subject", "body", "record_version", "sig"}
CERTIFICATION_PREFIX = b"guanxi/v1/certification\x00"
CERTIFICATION_MEMBERS = {"v", "id", "issuer", "holder", "organization", "course", "title", "level", "issued", "expires", "sig"}
RECEIPT_MEMBERS = {"v", "from", "to", "envelope", "hash", "seq", "high_water", "status", "reason", "received", "record_version", "sig"}
AUTHORITY_OPENERS = {"lead.offer", "catalog.publish", "mdf.budget", "record.handover"}
KID_PREFIX = b"guanxi/v1/kid\x00"
# SPEC §17, §21, §22: the small signed requests, by prefix, and their members.
REQUEST_MEMBERS = {
    b"guanxi/v1/fetch\x00": {"v", "from", "to", "sha256", "at", "sig"},
    b"guanxi/v1/introduction\x00": {"v", "from", "name", "url", "tls_cert_sha256", "pinned", "public_key", "to", "secret", "at", "sig"},
    b"guanxi/v1/heal\x00": {"v", "from", "to", "sent_after", "received_after", "at", "sig"},
}
MAX_SAFE = 2**53 - 1

failures = []


def check(condition, what):
    if condition:
        print(f"ok    {what}")
    else:
        print(f"FAIL  {what}")
        failures.append(what)


def b64url_decode(text):
    if "=" in text:
        raise ValueError("padding is not allowed")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(raw) != text:
        raise ValueError("non-canonical base64url")
    return raw


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Refused(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


def strict_parse(text):
    """SPEC.md §2: strict JSON: no duplicate keys, integers only within ±(2^53-1)."""

    def pairs(items):
        obj = {}
        for k, v in items:
            if k in obj:
                raise Refused("duplicate_key")
            obj[k] = v
        return obj

    def parse_float(literal):
        # Integral literals like 56.0 mean the integer; anything else is refused.
        d = Decimal(literal)
        if d != 0 and d.adjusted() > 16:
            raise Refused("number_out_of_range")
        if d != d.to_integral_value():
            raise Refused("not_an_integer")
        return parse_int(str(int(d)))

    def parse_int(literal):
        n = int(literal)
        if abs(n) > MAX_SAFE:
            raise Refused("number_out_of_range")
        return n

    def no_constants(name):
        raise Refused("bad_json")

    try:
        return json.loads(
            text,
            object_pairs_hook=pairs,
            parse_float=parse_float,
            parse_int=parse_int,
            parse_constant=no_constants,
        )
    except json.JSONDecodeError as e:
        raise Refused("bad_json") from e


def is_small_order(encoded):
    """SPEC.md §3: a public key is weak when its point has small order (8·A = identity)."""
    p = 2**255 - 19
    d = (-121665 * pow(121666, p - 2, p)) % p
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    sign = encoded[31] >> 7
    if y >= p:
        y -= p  # non-canonical encodings of small y
    u = (y * y - 1) % p
    v = (d * y * y + 1) % p
    x = (u * pow(v, 3, p) * pow(u * pow(v, 7, p), (p - 5) // 8, p)) % p
    if (v * x * x - u) % p != 0:
        x = (x * pow(2, (p - 1) // 4, p)) % p
        if (v * x * x - u) % p != 0:
            return False  # not a point at all; refused elsewhere
    if x == 0 and sign == 1:
        return False
    if x % 2 != sign:
        x = p - x

    def add(P, Q):
        (x1, y1), (x2, y2) = P, Q
        t = d * x1 * x2 * y1 * y2 % p
        return ((x1 * y2 + y1 * x2) * pow(1 + t, p - 2, p) % p, (y1 * y2 + x1 * x2) * pow(1 - t, p - 2, p) % p)

    point = (x, y)
    for _ in range(3):
        point = add(point, point)
    return point == (0, 1)


def load_public_key(text):
    raw = b64url_decode(text)
    if len(raw) != 32:
        raise Refused("bad_length")
    if is_small_order(raw):
        raise Refused("weak_key")
    return Ed25519PublicKey.from_public_bytes(raw)


def kid_of(raw):
    return b64url(hashlib.sha256(KID_PREFIX + raw).digest()[:16])


def verify_signed(text, key, prefix):
    # key is (Ed25519PublicKey, kid): the sig's kid must be that key's id (SPEC §4).
    """Returns the parsed object after the checks of SPEC.md §4: strict, canonical, signature."""
    data = text.encode("utf-8")
    obj = strict_parse(text)
    if rfc8785.dumps(obj) != data:
        raise Refused("not_canonical")
    sig = obj.get("sig")
    public_key, kid = key
    if not isinstance(sig, dict) or sig.get("alg") != "ed25519" or sig.get("kid") != kid:
        raise Refused("bad_signature")
    unsigned = {k: v for k, v in obj.items() if k != "sig"}
    signing_input = prefix + rfc8785.dumps(unsigned)
    try:
        public_key.verify(b64url_decode(sig["value"]), signing_input)
    except (InvalidSignature, ValueError) as e:
        raise Refused("bad_signature") from e
    return obj, unsigned


def main(path):
    vectors = json.loads(Path(path).read_text(encoding="utf-8"))
    check(bytes.fromhex(vectors["envelope_prefix_hex"]) == ENVELOPE_PREFIX, "envelope prefix")
    check(bytes.fromhex(vectors["receipt_prefix_hex"]) == RECEIPT_PREFIX, "receipt prefix")

    keys = {}
    for k in vectors["keys"]:
        private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(k["seed_hex"]))
        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        check(b64url(raw) == k["public_key"], f"{k['node']}: seed gives the public key")
        check(kid_of(raw) == k["kid"], f"{k['node']}: key id")
        keys[k["node"]] = (load_public_key(k["public_key"]), k["kid"])

    hashes = {}
    streams = {}
    for e in vectors["envelopes"]:
        name = e["name"]
        key, kid = keys[e["signer"]]
        try:
            obj, unsigned = verify_signed(e["canonical"], (key, kid), ENVELOPE_PREFIX)
        except Refused as r:
            check(False, f"{name}: refused with {r.code}")
            continue
        check(rfc8785.dumps(unsigned).decode() == e["unsigned_canonical"], f"{name}: unsigned canonical form")
        check(ENVELOPE_PREFIX + rfc8785.dumps(unsigned) == bytes.fromhex(e["signing_input_hex"]), f"{name}: signing input")
        check(obj["sig"]["kid"] == kid and obj["from"] == e["signer"], f"{name}: signer and kid")
        check(obj["sig"]["value"] == e["signature"], f"{name}: signature value")
        digest = hashlib.sha256(e["canonical"].encode()).hexdigest()
        check(digest == e["sha256"], f"{name}: sha256 of the exact bytes")
        check(obj["v"] == 1 and obj["id"][14] == "7", f"{name}: version 1, UUIDv7 id")
        check(set(obj) == ENVELOPE_MEMBERS, f"{name}: exactly the members of SPEC §5")
        rv = obj["record_version"]
        check(rv is None or (isinstance(rv, int) and rv >= 1), f"{name}: record_version null or >= 1")
        # SPEC §12.1: the opening message of a record from its authority is version 1.
        if obj["kind"] in AUTHORITY_OPENERS:
            check(rv == 1, f"{name}: {obj['kind']} from the authority opens the record at version 1")
        stream = (obj["from"], obj["to"])
        expected_seq, expected_prev = streams.get(stream, (1, None))
        check(obj["seq"] == expected_seq and obj["prev"] == expected_prev, f"{name}: seq/prev continue the chain")
        streams[stream] = (obj["seq"] + 1, digest)
        hashes[name] = digest

    for r in vectors["receipts"]:
        name = r["name"]
        key, kid = keys[r["signer"]]
        try:
            obj, unsigned = verify_signed(r["canonical"], (key, kid), RECEIPT_PREFIX)
        except Refused as x:
            check(False, f"{name}: refused with {x.code}")
            continue
        check(RECEIPT_PREFIX + rfc8785.dumps(unsigned) == bytes.fromhex(r["signing_input_hex"]), f"{name}: signing input")
        check(obj["hash"] in hashes.values(), f"{name}: names the hash of a vector envelope")
        check(obj["from"] == r["signer"] and obj["sig"]["kid"] == kid, f"{name}: signed by the receiver")
        check((obj["status"] == "accepted") == (obj["reason"] is None), f"{name}: reason null exactly when accepted")
        check(set(obj) == RECEIPT_MEMBERS, f"{name}: exactly the members of SPEC §6")
        rv = obj["record_version"]
        check(rv is None or (obj["status"] == "accepted" and isinstance(rv, int) and rv >= 1),
              f"{name}: record_version null, or >= 1 on an accepted receipt")
        try:
            verify_signed(r["canonical"], (key, kid), ENVELOPE_PREFIX)
            check(False, f"{name}: receipt signature must not verify as an envelope signature")
        except Refused:
            check(True, f"{name}: receipt signature does not verify as an envelope signature")

    for bad in vectors["invalid"]:
        name, expect = bad["name"], bad["expect"]
        try:
            obj, _ = verify_signed(bad["canonical"], keys[bad["signer"]], ENVELOPE_PREFIX)
            if expect == "chain_broken":
                previous = hashes[bad["after"]]
                check(obj["prev"] != previous, f"{name}: refused with chain_broken")
            else:
                check(False, f"{name}: accepted, expected {expect}")
        except Refused as r:
            check(r.code == expect, f"{name}: refused with {r.code} (expected {expect})")

    # SPEC §16: a certification verifies offline with its issuer's key.
    check(bytes.fromhex(vectors["certification_prefix_hex"]) == CERTIFICATION_PREFIX, "certification prefix")
    for c in vectors["certifications"]:
        name = c["name"]
        try:
            obj, unsigned = verify_signed(c["canonical"], keys[c["signer"]], CERTIFICATION_PREFIX)
            check(c["expect"] == "valid", f"{name}: accepted, expected {c['expect']}")
            check(set(obj) == CERTIFICATION_MEMBERS, f"{name}: exactly the members of SPEC §16")
            check(obj["issuer"] == c["signer"] and obj["v"] == 1, f"{name}: issued by its signer, version 1")
            check(CERTIFICATION_PREFIX + rfc8785.dumps(unsigned) == bytes.fromhex(c["signing_input_hex"]),
                  f"{name}: signing input")
            check(obj["expires"] is None or obj["expires"] > obj["issued"], f"{name}: expires after issued")
        except Refused as r:
            check(r.code == c["expect"], f"{name}: refused with {r.code} (expected {c['expect']})")
        try:
            verify_signed(c["canonical"], keys[c["signer"]], ENVELOPE_PREFIX)
            check(False, f"{name}: a certification signature must not verify as an envelope signature")
        except Refused:
            pass

    # SPEC §16.2: the questions an attempt draws.
    for d in vectors["quiz_draws"]:
        def rank(qid):
            return hashlib.sha256(b"guanxi/v1/draw\x00" + d["subject"].encode() + b"\x00" + qid.encode()).digest()
        drawn = sorted(d["pool"], key=rank)[: d["draw"]]
        check(drawn == d["drawn"], f"quiz draw for {d['subject']}")

    # SPEC §17, §21, §22: fetches, introductions and heal requests verify with
    # their signer's key under their own prefix, and under no other.
    for s in vectors["signed_requests"]:
        name, prefix = s["name"], bytes.fromhex(s["prefix_hex"])
        check(prefix in REQUEST_MEMBERS, f"{name}: a known prefix")
        try:
            obj, unsigned = verify_signed(s["canonical"], keys[s["signer"]], prefix)
            check(s["expect"] == "valid", f"{name}: accepted, expected {s['expect']}")
            check(set(obj) == REQUEST_MEMBERS[prefix], f"{name}: exactly the members of the SPEC")
            check(obj["from"] == s["signer"] and obj["v"] == 1, f"{name}: from its signer, version 1")
            check(prefix + rfc8785.dumps(unsigned) == bytes.fromhex(s["signing_input_hex"]), f"{name}: signing input")
        except Refused as r:
            check(r.code == s["expect"], f"{name}: refused with {r.code} (expected {s['expect']})")
        for other in REQUEST_MEMBERS:
            if other != prefix:
                try:
                    verify_signed(s["canonical"], keys[s["signer"]], other)
                    check(False, f"{name}: must not verify under another prefix")
                except Refused:
                    pass

    for bad in vectors["invalid_keys"]:
        try:
            load_public_key(bad["public_key"])
            check(False, f"{bad['name']}: key accepted, expected {bad['expect']}")
        except Refused as r:
            check(r.code == bad["expect"], f"{bad['name']}: refused with {r.code}")

    if failures:
        print(f"{len(failures)} checks failed")
        return 1
    print("all vectors verified")
    return 0


def check_certification(path, public_key):
    """`verify_vectors.py --certification FILE KEY`: checks one certification
    document a daemon issued against its issuer's public key (SPEC §16)."""
    text = Path(path).read_text(encoding="utf-8").rstrip("\n")
    try:
        raw = b64url_decode(public_key)
        key = (load_public_key(public_key), kid_of(raw))
        obj, _ = verify_signed(text, key, CERTIFICATION_PREFIX)
        if set(obj) != CERTIFICATION_MEMBERS or obj["v"] != 1:
            raise Refused("bad_members")
    except Refused as r:
        print(f"{path}: not a valid certification ({r.code})")
        return 1
    print(f"{path}: valid, {obj['holder']} of {obj['organization']}: {obj['title']} ({obj['level']})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--certification":
        sys.exit(check_certification(sys.argv[2], sys.argv[3]))
    target = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("vectors.json")
    sys.exit(main(target))
