#!/usr/bin/env python3
"""Writes the hand-written seed corpora of the fuzz targets, one folder per target, into the
given directory (default: fuzz/corpus/). They seeded the committed corpora, which were then
grown by fuzzing and minimized with `cargo fuzz cmin` (docs/fuzzing.md). Deterministic: the
same files every time, named by their SHA-1 as libFuzzer names corpus files."""

import base64
import hashlib
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def write(target: str, values) -> None:
    folder = OUT / target
    folder.mkdir(parents=True, exist_ok=True)
    for value in values:
        data = value if isinstance(value, bytes) else value.encode()
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def rust_literals(source: str, name: str):
    """The string literals of `const NAME: &[&str] = &[ ... ];` in a Rust file."""
    block = re.search(r"const %s: &\[&str\] = &\[(.*?)\n\];" % name, source, re.S).group(1)
    for literal in re.findall(r'"((?:[^"\\]|\\.)*)"', block):
        literal = re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda m: chr(int(m.group(1), 16)), literal)
        yield (
            literal.replace("\\t", "\t")
            .replace("\\r", "\r")
            .replace("\\n", "\n")
            .replace("\\0", "\0")
            .replace("\\\\", "\\")
        )


# remember_cookie: valid tokens (deterministic bytes), and the tampered forms of the tests.
tokens = []
for i in range(4):
    selector = bytes((i * 37 + j) % 256 for j in range(16))
    validator = bytes((i * 91 + 7 * j) % 256 for j in range(32))
    tokens.append(f"{b64(selector)}.{b64(validator)}")
sel, val = tokens[0].split(".")
write(
    "remember_cookie",
    tokens
    + [
        "",
        sel,
        f"{sel}.{val}.x",
        f"{sel}!{val}",
        "*" * 22 + "." + val,
        f"{sel}={val}",
        f"{sel}." + val.replace("-", "+").replace("_", "/"),
        f"{sel[:-1]}B.{val}",  # non-canonical trailing bits
        f"{sel}.{val}=",  # padding
        "a" * 66,
    ],
)

# safe_next: the payloads of tests/next.rs, also as query strings.
next_rs = (ROOT / "tests" / "next.rs").read_text()
payloads = list(rust_literals(next_rs, "REFUSED")) + list(rust_literals(next_rs, "ACCEPTED"))
payloads += ["/café", "/文件?q=ü", "/login?next=%2Fdashboard"]
queries = [
    "next=%2Fdashboard",
    "a=1&next=%2Fx%3Fy%3D1%26z%3D2",
    "next=/plain",
    "next=%2F%2Fevil.example",
    "next=%2F%5Cevil.example",
    "next=https%3A%2F%2Fevil.example",
    "next=/a+b",
    "next=//evil.example&next=/ok",
    "next=",
]
write("safe_next", [p for p in payloads if p] + queries)

# auth_record: records as the library writes them, and near misses.
digest = b64(hashlib.sha256(b"$argon2id$v=19$m=19456,t=2,p=1$...").digest()[:16])
protection = b64(hashlib.sha256(b"127.0.0.1|curl/8").digest()[:12])
now = 1_750_000_000
records = [
    {"u": 42, "h": digest, "l": now, "f": now, "s": now, "p": protection},
    {"u": "alice", "h": digest, "l": now, "s": now + 600, "p": protection, "m": True},
    {"u": "6f1c2a9e-4b1d-4c38-9d0e-2f3a1b5c7d90", "h": digest, "l": now, "s": now},
    {"u": [1, "tenant"], "h": digest, "l": 0, "f": None, "s": 0, "p": None, "m": False},
    {"u": {"org": 1, "id": 2}, "h": "", "l": -1, "s": 2**63 - 1},
]
# The library stores a record as an array in field order (user id, auth-hash digest, login
# time, fresh time, last seen, protection id, remembered).
FIELDS = [("u", None), ("h", ""), ("l", 0), ("f", None), ("s", 0), ("p", None), ("m", False)]
arrays = [[r.get(name, default) for name, default in FIELDS] for r in records]
write(
    "auth_record",
    [json.dumps(a, separators=(",", ":")) for a in arrays]
    + ["[1]", "null", "[]", '[1,"x",1.5,null,1,null,false]', '{"u":1,"h":"","l":1,"s":1}'],
)

# werkzeug_hash: every hash of tests/vectors/werkzeug.json, and hand-made limits.
vectors = json.loads((ROOT / "tests" / "vectors" / "werkzeug.json").read_text())["vectors"]
hashes = sorted({v["hash"] for v in vectors})
hashes += [
    "pbkdf2:sha256:10000000$s$00",
    "pbkdf2:sha256:10000001$s$00",
    "pbkdf2:sha1$s$00",
    "scrypt:131072:8:1$s$00",
    "scrypt:262144:8:1$s$00",
    "scrypt:2:1:1$s$",
    "scrypt:16384:8:16$s$00",
    "scrypt:1024:8:1:1$s$00",
    "argon2$s$00",
]
write("werkzeug_hash", hashes)
