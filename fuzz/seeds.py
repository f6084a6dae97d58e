#!/usr/bin/env python3
"""Seed corpora for the fuzz targets from the golden fixtures in dataplane/tests/fixtures/.

Each recorded exchange becomes two seeds per target, one as the server sees it (client bytes are
ingress) and one as the client sees it (client bytes are egress), in the input format of
fuzz/src/lib.rs: records of (control byte, length, bytes). The control byte carries only the
direction (bit 0: 0 ingress, 1 egress); the length is one byte (http1, dns: a longer segment is
cut into 255-byte records) or two big-endian bytes (http2).

Usage (from fuzz/): python3 seeds.py [CORPUS_ROOT]   (default: corpus, i.e. corpus/<target>/)
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "dataplane", "tests", "fixtures")

# target -> width of the length field
WIDE = {"http1": False, "http2": True, "dns": False}


def segments(proto, name):
    """(from the client?, bytes) in recorded order, read as the golden tests read them."""
    base = os.path.join(FIXTURES, proto, name)
    with open(base + ".segments") as f:
        index = [line.split(" ", 1) for line in f.read().splitlines() if line]
    if proto == "dns":
        # Each line is `C|S <hex of the whole segment>`.
        return [(tag == "C", bytes.fromhex(val)) for tag, val in index]
    # Each line is `C|S <len>`, consuming <name>.client or <name>.server in order.
    with open(base + ".client", "rb") as f:
        client = f.read()
    with open(base + ".server", "rb") as f:
        server = f.read()
    out, ci, si = [], 0, 0
    for tag, val in index:
        n = int(val)
        if tag == "C":
            out.append((True, client[ci : ci + n]))
            ci += n
        else:
            out.append((False, server[si : si + n]))
            si += n
    assert (ci, si) == (len(client), len(server)), f"{name}: segments cover the bytes"
    return out


def encode(segs, server_view, wide):
    """The fuzz input for one replay of a recorded exchange."""
    step = 0xFFFF if wide else 0xFF
    out = bytearray()
    for from_client, data in segs:
        ctl = 0 if from_client == server_view else 1
        for i in range(0, max(len(data), 1), step):
            piece = data[i : i + step]
            out.append(ctl)
            out += len(piece).to_bytes(2 if wide else 1, "big")
            out += piece
    return bytes(out)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    for target, wide in WIDE.items():
        src = os.path.join(FIXTURES, target)
        names = sorted(
            f[: -len(".segments")] for f in os.listdir(src) if f.endswith(".segments")
        )
        dst = os.path.join(root, target)
        os.makedirs(dst, exist_ok=True)
        for name in names:
            segs = segments(target, name)
            for view, server_view in (("server", True), ("client", False)):
                path = os.path.join(dst, f"seed_{name}_{view}")
                with open(path, "wb") as f:
                    f.write(encode(segs, server_view, wide))
        print(f"{target}: {2 * len(names)} seeds in {dst}")


if __name__ == "__main__":
    main()
