#!/usr/bin/env python3
"""Generate tests/vectors/werkzeug.json: Werkzeug password hashes for the `werkzeug` feature.

Each vector is {name, password, hash, valid, source, slow, note?}:
- `valid` is what login-manager must answer (it equals Werkzeug's own `check_password_hash`
  answer unless `note` says otherwise; the script checks that when Werkzeug is installed);
- `source` is "hashlib" (built here with hashlib.pbkdf2_hmac / hashlib.scrypt exactly as
  Werkzeug's `_hash_internal` does, with fixed salts so the output is reproducible) or
  "werkzeug" (made by the real `werkzeug.security.generate_password_hash`, random salts);
- `slow` marks vectors too costly for unoptimised (debug) test builds: PBKDF2 with Werkzeug's
  default 1 000 000 iterations takes about 3 s there (0.1 s in release). Werkzeug's default
  scrypt cost (32768:8:1) is not slow: the KDF crates are optimised even in debug builds.

Run from anywhere: python3 tests/vectors/make_werkzeug_vectors.py
"""

import hashlib
import json
import pathlib

OUT = pathlib.Path(__file__).with_name("werkzeug.json")

PASSWORD = "correct horse battery staple"
WRONG = "correct horse battery stapler"
UNICODE = "pässwörd 密码 🔑"
SALT = "Q3v8ZzH1kP9sYt2a"  # Werkzeug salts: 16 characters of [A-Za-z0-9]


def pbkdf2(password, salt, digest, iterations):
    h = hashlib.pbkdf2_hmac(digest, password.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2:{digest}:{iterations}${salt}${h}"


def scrypt(password, salt, n, r, p):
    # Werkzeug passes maxmem = 132 * n * r * p and keeps hashlib's 64-byte output.
    h = hashlib.scrypt(
        password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=132 * n * r * p
    ).hex()
    return f"scrypt:{n}:{r}:{p}${salt}${h}"


def vector(name, password, hash_, valid, source="hashlib", slow=False, note=None):
    v = {
        "name": name,
        "password": password,
        "hash": hash_,
        "valid": valid,
        "source": source,
        "slow": slow,
    }
    if note:
        v["note"] = note
    return v


def hashlib_vectors():
    vs = []
    for digest in ["sha256", "sha512", "sha1", "sha224", "sha384"]:
        h = pbkdf2(PASSWORD, SALT, digest, 1000)
        vs.append(vector(f"pbkdf2 {digest}", PASSWORD, h, True))
        vs.append(vector(f"pbkdf2 {digest}, wrong password", WRONG, h, False))
    h = scrypt(PASSWORD, SALT, 1024, 8, 1)
    vs.append(vector("scrypt 1024:8:1", PASSWORD, h, True))
    vs.append(vector("scrypt 1024:8:1, wrong password", WRONG, h, False))
    h = scrypt(PASSWORD, SALT, 512, 4, 2)
    vs.append(vector("scrypt 512:4:2", PASSWORD, h, True))
    vs.append(vector("scrypt 512:4:2, wrong password", WRONG, h, False))

    vs.append(vector("pbkdf2 unicode password", UNICODE, pbkdf2(UNICODE, SALT, "sha256", 1000), True))
    vs.append(vector("scrypt unicode password", UNICODE, scrypt(UNICODE, SALT, 1024, 8, 1), True))
    h = scrypt(UNICODE, SALT, 1024, 8, 1)
    vs.append(vector("scrypt unicode password, NFD form", "pa\u0308sswo\u0308rd 密码 🔑", h, False,
                     note="no Unicode normalisation, as in Werkzeug"))
    vs.append(vector("pbkdf2 non-ASCII salt used as UTF-8", PASSWORD, pbkdf2(PASSWORD, "sälz", "sha256", 1000), True))
    vs.append(vector("pbkdf2 empty password", "", pbkdf2("", SALT, "sha256", 1000), True))
    vs.append(vector("pbkdf2 upper-case digest name", PASSWORD,
                     pbkdf2(PASSWORD, SALT, "sha256", 1000).replace("sha256", "SHA256", 1), True))

    h = pbkdf2(PASSWORD, SALT, "sha256", 1000)
    method, salt, hexdigest = h.split("$")
    vs.append(vector("pbkdf2 upper-case hex digest", PASSWORD, f"{method}${salt}${hexdigest.upper()}", False,
                     note="Werkzeug compares hex strings"))
    vs.append(vector("pbkdf2 truncated digest", PASSWORD, h[:-2], False))
    vs.append(vector("pbkdf2 missing digest", PASSWORD, f"{method}${salt}", False))

    # Guards: refused without running the KDF (Werkzeug would hang, raise or allocate).
    guards = [
        ("pbkdf2 100 million iterations", f"pbkdf2:sha256:100000000${SALT}${hexdigest}"),
        ("pbkdf2 zero iterations", f"pbkdf2:sha256:0${SALT}${hexdigest}"),
        ("pbkdf2 iterations not a number", f"pbkdf2:sha256:lots${SALT}${hexdigest}"),
        ("pbkdf2 too many arguments", f"pbkdf2:sha256:1000:1${SALT}${hexdigest}"),
        ("scrypt n not a power of two", f"scrypt:1000:8:1${SALT}${hexdigest}"),
        ("scrypt n = 2^30", f"scrypt:1073741824:8:1${SALT}${hexdigest}"),
        ("scrypt n = 2^64", f"scrypt:18446744073709551616:8:1${SALT}${hexdigest}"),
        ("scrypt huge p", f"scrypt:1024:8:4000000000${SALT}${hexdigest}"),
        ("scrypt two arguments", f"scrypt:1024:8${SALT}${hexdigest}"),
        ("scrypt r = 0", f"scrypt:1024:0:1${SALT}${hexdigest}"),
    ]
    vs += [vector(name, PASSWORD, h, False, note="guard") for name, h in guards]
    vs.append(vector("pbkdf2 md5 (unsupported digest)", PASSWORD, pbkdf2(PASSWORD, SALT, "md5", 1000), False,
                     note="Werkzeug accepts any hashlib digest; login-manager only SHA-1 and SHA-2"))

    # Werkzeug's defaults when the arguments are omitted (it always writes them itself).
    h = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), SALT.encode(), 1_000_000).hex()
    vs.append(vector("pbkdf2 without digest or iterations (sha256, 1000000)", PASSWORD,
                     f"pbkdf2${SALT}${h}", True, slow=True))
    h = scrypt(PASSWORD, SALT, 32768, 8, 1).split("$")[2]
    vs.append(vector("scrypt without arguments (32768:8:1)", PASSWORD, f"scrypt${SALT}${h}", True))
    return vs


def werkzeug_vectors(security):
    g = security.generate_password_hash
    vs = []
    for method in ["pbkdf2:sha256:1000", "pbkdf2:sha512:1000", "scrypt:1024:8:1"]:
        h = g(PASSWORD, method=method)
        vs.append(vector(f"werkzeug {method}", PASSWORD, h, True, source="werkzeug"))
        vs.append(vector(f"werkzeug {method}, wrong password", WRONG, h, False, source="werkzeug"))
    vs.append(vector("werkzeug scrypt unicode", UNICODE, g(UNICODE, method="scrypt:1024:8:1"), True,
                     source="werkzeug"))
    h = g(PASSWORD)
    assert h.startswith("scrypt:32768:8:1$"), h
    vs.append(vector("werkzeug default (scrypt:32768:8:1)", PASSWORD, h, True, source="werkzeug"))
    vs.append(vector("werkzeug default, wrong password", WRONG, h, False, source="werkzeug"))
    h = g(PASSWORD, method="pbkdf2")
    vs.append(vector(f"werkzeug pbkdf2 default ({h.split('$')[0]})", PASSWORD, h, True, source="werkzeug",
                     slow=True))
    return vs


def main():
    vectors = hashlib_vectors()
    try:
        import importlib.metadata

        from werkzeug import security

        version = importlib.metadata.version("werkzeug")
    except ImportError:
        security, version = None, None
        print("werkzeug is not installed: writing hashlib vectors only (pip install werkzeug)")
    if security:
        vectors += werkzeug_vectors(security)
        for v in vectors:
            if v.get("note") in ("guard",) or "unsupported" in v["name"]:
                continue
            assert security.check_password_hash(v["hash"], v["password"]) == v["valid"], v["name"]
    names = [v["name"] for v in vectors]
    assert len(names) == len(set(names)), "vector names must be unique"
    OUT.write_text(
        json.dumps({"werkzeug_version": version, "vectors": vectors}, indent=2, ensure_ascii=False) + "\n"
    )
    print(f"wrote {len(vectors)} vectors to {OUT}")


if __name__ == "__main__":
    main()
