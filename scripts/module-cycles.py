#!/usr/bin/env python3
"""Finds module cycles inside each crate of the workspace.

Per crate root (src/lib.rs, src/main.rs, src/bin/*.rs) it builds the graph
of the crate's *file* modules, found by following `mod x;` declarations
(`src/a.rs` or `src/a/mod.rs` is `a`, `src/a/b.rs` is `a::b`; an inline
`mod x { ... }` block counts as part of the file it is written in). There
is an edge A -> B when code in A names an item of B through a `crate::`,
`super::` or `self::` path, in a `use` declaration or inline; a path
resolves to the deepest file module it goes through (`crate::a::b::Item`
is `a::b` when src/a/b.rs exists, else `a`). An edge to a module reaches
its descendants too: what a parent re-exports is its children's.

Not edges: references between a module and its own ancestors or
descendants (a parent and its child are one unit, and the crate root is
everyone's ancestor), `#[cfg(test)]` items (test modules included), and
`tests/` folders (never read). Paths that start with another crate's name
or with a name brought in by `use` are not followed.

Prints each elementary cycle as `crate: a -> b -> c -> a`, each edge with
the first reference that makes it, and exits 1 when there is one, 0 when
there is none (2 on a usage error).

Usage: scripts/module-cycles.py [--root DIR] [CRATE_DIR ...]
  --root DIR   the workspace root (default: this script's parent folder);
               its Cargo.toml's [workspace] members are the crates checked
  CRATE_DIR    check only these crate folders (relative to the root)
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# Stop listing cycles of one crate root past this many (an SCC can hold a
# great many elementary cycles; the first ones say enough).
MAX_CYCLES = 100

# ---------------------------------------------------------------- lexing


@dataclass
class Tok:
    kind: str  # "id", "str", "p" (punctuation)
    text: str
    line: int


_CHAR_LIT = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F_]+\}|.)|[^\\'\n])'")
_IDENT = re.compile(r"(?:r#)?[A-Za-z_][A-Za-z0-9_]*")
_RAW_STR = re.compile(r'(?:b|c)?r(#*)"')


def lex(src: str) -> list[Tok]:
    """Tokens of Rust source: comments dropped, strings and chars kept as
    one token each, so nothing inside them is mistaken for code."""
    toks: list[Tok] = []
    i, n, line = 0, len(src), 1
    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    line += src[i] == "\n"
                    i += 1
        elif (m := _RAW_STR.match(src, i)) and (i == 0 or not _is_ident_char(src[i - 1])):
            end = '"' + m.group(1)
            j = src.find(end, m.end())
            j = n if j < 0 else j
            body = src[m.end() : j]
            toks.append(Tok("str", body, line))
            line += body.count("\n")
            i = j + len(end)
        elif c == '"' or (c in "bc" and src.startswith('"', i + 1) and (i == 0 or not _is_ident_char(src[i - 1]))):
            start_line = line
            j = i + (1 if c == '"' else 2)
            buf = []
            while j < n and src[j] != '"':
                if src[j] == "\\":
                    buf.append(src[j : j + 2])
                    line += src[j + 1 : j + 2] == "\n"
                    j += 2
                    continue
                line += src[j] == "\n"
                buf.append(src[j])
                j += 1
            toks.append(Tok("str", "".join(buf), start_line))
            i = j + 1
        elif c == "'":
            m = _CHAR_LIT.match(src, i)
            if m:
                toks.append(Tok("str", m.group(0), line))
                i = m.end()
            else:  # a lifetime or label: skip the quote, the name follows
                i += 1
        elif (m := _IDENT.match(src, i)) and (i == 0 or not _is_ident_char(src[i - 1])):
            toks.append(Tok("id", m.group(0).removeprefix("r#"), line))
            i = m.end()
        elif c.isdigit():
            j = i
            while j < n and (src[j].isalnum() or src[j] == "_"):
                j += 1
            i = max(j, i + 1)
        elif src.startswith("::", i):
            toks.append(Tok("p", "::", line))
            i += 2
        else:
            toks.append(Tok("p", c, line))
            i += 1
    return toks


def _is_ident_char(c: str) -> bool:
    return c.isalnum() or c == "_"


# --------------------------------------------------------------- parsing

OPEN = {"(": ")", "[": "]", "{": "}"}


@dataclass
class Ref:
    """A `crate::`/`super::`/`self::` path found in a file."""

    scope: tuple[str, ...]  # the module (file + inline blocks) it is written in
    path: list[str]  # segments, `super`/`self`/`crate` included
    line: int


@dataclass
class ModDecl:
    scope: tuple[str, ...]
    inline: tuple[str, ...]  # inline blocks around it, within the file
    name: str
    path_attr: str | None
    line: int


@dataclass
class Parsed:
    refs: list[Ref] = field(default_factory=list)
    mods: list[ModDecl] = field(default_factory=list)


def _skip_group(toks: list[Tok], i: int) -> int:
    """Index just past the bracket group opening at `i`."""
    stack = [OPEN[toks[i].text]]
    i += 1
    while i < len(toks) and stack:
        t = toks[i]
        if t.kind == "p" and t.text in OPEN:
            stack.append(OPEN[t.text])
        elif t.kind == "p" and stack and t.text == stack[-1]:
            stack.pop()
        i += 1
    return i


def _skip_item(toks: list[Tok], i: int) -> int:
    """Index just past the item starting at `i`: up to a `;` outside any
    brackets, or through the first `{ ... }` group outside brackets."""
    while i < len(toks):
        t = toks[i]
        if t.kind == "p" and t.text == ";":
            return i + 1
        if t.kind == "p" and t.text == "{":
            return _skip_group(toks, i)
        if t.kind == "p" and t.text in "([":
            i = _skip_group(toks, i)
            continue
        i += 1
    return i


def _attr(toks: list[Tok], i: int) -> tuple[int, list[Tok]]:
    """At `#`: the index past the attribute `#[...]`/`#![...]` and its tokens."""
    j = i + 1
    if j < len(toks) and toks[j].text == "!":
        j += 1
    if j >= len(toks) or toks[j].text != "[":
        return i + 1, []
    end = _skip_group(toks, j)
    return end, toks[j + 1 : end - 1]


def _is_cfg_test(attr: list[Tok]) -> bool:
    return [t.text for t in attr] == ["cfg", "(", "test", ")"]


def _path_attr(attr: list[Tok]) -> str | None:
    if len(attr) == 3 and attr[0].text == "path" and attr[1].text == "=" and attr[2].kind == "str":
        return attr[2].text
    return None


def _use_tree(toks: list[Tok], i: int, prefix: list[str], out: list[tuple[list[str], int]]) -> int:
    """Parses a use tree at `i` (after `use` or inside braces) into full
    paths; returns the index past it."""
    segs = list(prefix)
    line = toks[i].line if i < len(toks) else 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "p" and t.text == "::":
            i += 1
        elif t.kind == "id" and t.text == "as":
            i += 2  # `as name`
        elif t.kind == "id":
            segs.append(t.text)
            i += 1
        elif t.kind == "p" and t.text == "*":
            i += 1
        elif t.kind == "p" and t.text == "{":
            i += 1
            while i < len(toks) and toks[i].text != "}":
                if toks[i].text == ",":
                    i += 1
                    continue
                i = _use_tree(toks, i, segs, out)
            return i + 1
        else:
            break
    if segs and segs[-1] == "self":
        segs.pop()
    if segs:
        out.append((segs, line))
    return i


def parse(toks: list[Tok], file_scope: tuple[str, ...]) -> Parsed:
    """The references and `mod` declarations of one file."""
    p = Parsed()
    # Inline module blocks open at brace depth d: (name, depth).
    inline: list[tuple[str, int]] = []
    depth = 0
    attrs: list[list[Tok]] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        scope = file_scope + tuple(n for n, _ in inline)
        if t.kind == "p" and t.text == "#":
            i, a = _attr(toks, i)
            if a:
                attrs.append(a)
            continue
        pending, attrs = attrs, []
        if any(_is_cfg_test(a) for a in pending):
            # A test-only item (a test module above all): not part of the graph.
            i = _skip_item(toks, i)
            continue
        if t.kind == "id" and t.text == "mod" and i + 2 < len(toks) and toks[i + 1].kind == "id":
            name, after = toks[i + 1].text, toks[i + 2]
            if after.text == ";":
                path_attr = next((v for a in pending if (v := _path_attr(a))), None)
                p.mods.append(ModDecl(scope, tuple(n for n, _ in inline), name, path_attr, t.line))
                i += 3
                continue
            if after.text == "{":
                depth += 1
                inline.append((name, depth))
                i += 3
                continue
        if t.kind == "id" and t.text == "use":
            paths: list[tuple[list[str], int]] = []
            i = _use_tree(toks, i + 1, [], paths)
            for segs, line in paths:
                if segs and segs[0] in ("crate", "super", "self"):
                    p.refs.append(Ref(scope, segs, line))
            continue
        if (
            t.kind == "id"
            and t.text in ("crate", "super", "self")
            and i + 1 < len(toks)
            and toks[i + 1].text == "::"
            and not (i > 0 and toks[i - 1].text in ("$", "::", "in"))
        ):
            segs, j = [t.text], i + 1
            while j + 1 < len(toks) and toks[j].text == "::" and toks[j + 1].kind == "id":
                segs.append(toks[j + 1].text)
                j += 2
            p.refs.append(Ref(scope, segs, t.line))
            i = j
            continue
        if t.kind == "p" and t.text == "{":
            depth += 1
        elif t.kind == "p" and t.text == "}":
            if inline and inline[-1][1] == depth:
                inline.pop()
            depth -= 1
        i += 1
    return p


# ---------------------------------------------------------------- graph


@dataclass
class Module:
    path: tuple[str, ...]
    file: Path
    parsed: Parsed


def child_dir(file: Path, is_root: bool) -> Path:
    """Where the file modules declared in `file` live."""
    if is_root or file.name == "mod.rs":
        return file.parent
    return file.parent / file.stem


def load_tree(root_file: Path) -> dict[tuple[str, ...], Module]:
    """Every file module reachable from a crate root by `mod x;`."""
    mods: dict[tuple[str, ...], Module] = {}
    todo: list[tuple[tuple[str, ...], Path, bool]] = [((), root_file, True)]
    while todo:
        path, file, is_root = todo.pop()
        if path in mods or not file.is_file():
            continue
        parsed = parse(lex(file.read_text(encoding="utf-8")), path)
        mods[path] = Module(path, file, parsed)
        base = child_dir(file, is_root)
        for d in parsed.mods:
            if d.path_attr is not None:
                target = file.parent / d.path_attr
            else:
                folder = base.joinpath(*d.inline)
                target = folder / f"{d.name}.rs"
                if not target.is_file():
                    target = folder / d.name / "mod.rs"
            todo.append((d.scope + (d.name,), target, False))
    return mods


def resolve(ref: Ref, files: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The deepest file module a path goes through."""
    segs = ref.path
    if segs[0] == "crate":
        base: list[str] = []
        rest = segs[1:]
    else:
        base = list(ref.scope)
        k = 0
        if segs[0] == "self":
            k = 1
        while k < len(segs) and segs[k] == "super":
            if not base:
                return None
            base.pop()
            k += 1
        rest = segs[k:]
    full = tuple(base + rest)
    for n in range(len(full), -1, -1):
        if full[:n] in files:
            return full[:n]
    return None


def related(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One is the other, or an ancestor of it."""
    k = min(len(a), len(b))
    return a[:k] == b[:k]


def name(m: tuple[str, ...]) -> str:
    return "::".join(m) if m else "crate"


def edges_of(mods: dict[tuple[str, ...], Module]) -> dict[tuple, dict[tuple, tuple[Path, int, str]]]:
    """A -> B -> the first reference (file, line, path) that makes the edge."""
    files = set(mods)
    edges: dict[tuple, dict[tuple, tuple[Path, int, str]]] = {m: {} for m in mods}
    for m in sorted(mods):
        mod = mods[m]
        for r in mod.parsed.refs:
            target = resolve(r, files)
            if target is None or related(m, target):
                continue
            edges[m].setdefault(target, (mod.file, r.line, "::".join(r.path)))
    # What names a module reaches its descendants too: `crate::a::Item` may
    # be a child's item that `a` re-exports.
    for m, targets in edges.items():
        for target, (file, line, path) in list(targets.items()):
            for d in files:
                if len(d) > len(target) and d[: len(target)] == target and not related(m, d):
                    targets.setdefault(d, (file, line, f"{path} (through {name(target)})"))
    return edges


def cycles(edges: dict[tuple, dict[tuple, object]]) -> list[list[tuple]]:
    """Elementary cycles, each starting at its smallest node (at most
    MAX_CYCLES)."""
    nodes = sorted(edges)
    order = {n: k for k, n in enumerate(nodes)}
    found: list[list[tuple]] = []
    for start in nodes:
        stack = [(start, iter(sorted(edges[start])))]
        path, on_path = [start], {start}
        while stack and len(found) < MAX_CYCLES:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                on_path.discard(path.pop())
                continue
            if nxt == start:
                found.append(path + [start])
            elif order[nxt] > order[start] and nxt not in on_path:
                stack.append((nxt, iter(sorted(edges[nxt]))))
                path.append(nxt)
                on_path.add(nxt)
    return found


# ------------------------------------------------------------------ main


def crate_roots(crate: Path) -> list[tuple[str, Path]]:
    src = crate / "src"
    roots = []
    if (src / "lib.rs").is_file():
        roots.append(("", src / "lib.rs"))
    if (src / "main.rs").is_file():
        roots.append(("bin main", src / "main.rs"))
    bins = src / "bin"
    if bins.is_dir():
        for b in sorted(bins.iterdir()):
            if b.suffix == ".rs":
                roots.append((f"bin {b.stem}", b))
            elif (b / "main.rs").is_file():
                roots.append((f"bin {b.name}", b / "main.rs"))
    return roots


def workspace_crates(root: Path) -> list[Path]:
    manifest = tomllib.loads((root / "Cargo.toml").read_text(encoding="utf-8"))
    members = manifest.get("workspace", {}).get("members", [])
    out: list[Path] = []
    for pattern in members:
        out.extend(sorted(p for p in root.glob(pattern) if (p / "Cargo.toml").is_file()))
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="module-cycles.py",
        description=__doc__.split("\n\nUsage:", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("crates", nargs="*", type=Path, help="crate folders (default: the workspace's members)")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    crates = [root / c for c in args.crates] if args.crates else workspace_crates(root)
    total = 0
    for crate in crates:
        for label, root_file in crate_roots(crate):
            mods = load_tree(root_file)
            edges = edges_of(mods)
            tag = crate.name + (f" ({label})" if label else "")
            for cyc in cycles(edges):
                total += 1
                print(f"{tag}: {' -> '.join(name(m) for m in cyc)}")
                for a, b in zip(cyc, cyc[1:]):
                    file, line, path = edges[a][b]
                    shown = file.relative_to(root) if file.is_relative_to(root) else file
                    print(f"    {name(a)} -> {name(b)}: {shown}:{line} {path}")
    sys.stdout.flush()
    if total:
        print(f"module-cycles: {total} cycle(s); break each so its edges point one way", file=sys.stderr)
        return 1
    print("module-cycles: no module cycle in any crate", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
