#!/usr/bin/env python3
"""Drops the `name` custom section (function names, a third of the module) from the built wasm.

Why here and not `strip = true` in Cargo.toml: that also drops the `target_features` section,
which wasm-bindgen reads to know which Wasm features the module uses (it warns). The names are
only for stack traces, and the request path has no panics for one to name.
Usage: scripts/strip_names.py FILE.wasm (rewritten in place; a module without names is kept).
"""
import sys


def leb(data, i):
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


path = sys.argv[1]
data = open(path, "rb").read()
if data[:4] != b"\0asm":
    sys.exit(f"{path}: not a wasm module")
out, i = bytearray(data[:8]), 8
while i < len(data):
    start = i
    section = data[i]
    size, body = leb(data, i + 1)
    end = body + size
    if section == 0:
        name_len, name_at = leb(data, body)
        if data[name_at:name_at + name_len] == b"name":
            i = end
            continue
    out += data[start:end]
    i = end
open(path, "wb").write(bytes(out))
