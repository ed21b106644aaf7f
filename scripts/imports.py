#!/usr/bin/env python3
"""Which top-level module of src/ imports which (the arrows of the README's Layout section).

Usage: python3 scripts/imports.py [src]   Prints "module -> imported modules", one per line.
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "src"
use_block = re.compile(r"use\s+crate::(\{.*?\}|[a-z_]+)\s*[;:]", re.S)
inline = re.compile(r"\bcrate::([a-z_]+)")


def top_level(block):
    """The first path segments of `crate::{a::b, c, d::{e}}`."""
    if not block.startswith("{"):
        return {block}
    depth, names, current = 0, set(), ""
    for ch in block[1:-1]:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            names.add(current.strip().split("::")[0])
            current = ""
            continue
        if depth == 0 and ch != "}":
            current += ch
    if current.strip():
        names.add(current.strip().split("::")[0])
    return {n for n in names if n}


graph = {}
for dirpath, _, files in os.walk(root):
    for name in files:
        if not name.endswith(".rs"):
            continue
        path = os.path.join(dirpath, name)
        rel = os.path.relpath(path, root)
        module = rel.split(os.sep)[0].removesuffix(".rs")
        text = open(path).read()
        deps = set(inline.findall(text))
        for block in use_block.findall(text):
            deps |= top_level(block)
        graph.setdefault(module, set()).update(d for d in deps if d != module)
for module in sorted(graph):
    print(f"{module} -> {' '.join(sorted(graph[module])) or '(nothing)'}")
