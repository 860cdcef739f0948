"""The package's shape (issue 15): no import cycles, the Dask engines use public names only,
and no module over ~400 lines or function over ~80 except those listed, with a reason, in
docs/architecture.md.

These tests read the source tree (``python/ecorecover`` and ``rust/``), so they run against the
development checkout; against an installed wheel they read the installed modules (the Rust
sources are then those of the checkout the tests come from).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import ecorecover

PKG = Path(ecorecover.__file__).parent
ROOT = Path(__file__).resolve().parents[1]
ARCH = ROOT / "docs" / "architecture.md"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (a lazy import in a function is a dependency too),
    except those under ``if TYPE_CHECKING:`` (never executed)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_pkg:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _edges() -> dict[str, set[tuple[str, str]]]:
    """module -> {(imported module, imported name or '')} for imports inside the package."""
    mods = _modules()
    out: dict[str, set[tuple[str, str]]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        deps: set[tuple[str, str]] = set()
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                deps |= {(a.name, "") for a in node.names if a.name.startswith("ecorecover")}
                continue
            target = _resolve(name, path.name == "__init__.py", node)
            if not target.startswith("ecorecover"):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                deps.add((sub, "") if sub in mods else (target, a.name))
        out[name] = {(m, n) for m, n in deps if m in mods and m != name}
    return out


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_no_import_cycles() -> None:
    # A module importing its own package's __init__ (the parent of every submodule) is Python's
    # normal package loading, not a cycle of ours; every other edge counts.
    graph = {m: {d for d, _ in deps if d not in _ancestors(m)} for m, deps in _edges().items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_walker_sees_a_cycle_and_a_private_import(tmp_path: Path) -> None:
    """The checks above can fail: the same walk on a two-module cycle finds it."""
    a = ast.parse("from . import b\n")
    b = ast.parse("def f():\n    from .a import _hidden\n")
    ia = [_resolve("p.a", False, n) for n in _imports(a) if isinstance(n, ast.ImportFrom)]
    ib = [(_resolve("p.b", False, n), [x.name for x in n.names]) for n in _imports(b) if isinstance(n, ast.ImportFrom)]
    assert ia == ["p"] and ib == [("p.a", ["_hidden"])]


def _private(module: str, name: str) -> bool:
    parts = module.split(".") + ([name] if name else [])
    return any(p.startswith("_") and not p.startswith("__") for p in parts[1:])


def test_dask_engines_use_public_names_only() -> None:
    """ecorecover.dask implements the engine interfaces of recovery and training: it may import
    their public names only (no ``_private`` module or name of another part of the package)."""
    bad = []
    for mod, deps in _edges().items():
        if mod != "ecorecover.dask" and not mod.startswith("ecorecover.dask."):
            continue
        for dep, name in deps:
            if dep.startswith("ecorecover.dask"):
                continue
            if _private(dep, name):
                bad.append(f"{mod}: {dep}{'.' + name if name else ''}")
    assert not bad, "ecorecover.dask imports private names:\n" + "\n".join(sorted(bad))


# --------------------------------------------------------------------------------------------
# Sizes


def _listed_exceptions() -> set[str]:
    """Entries of the table under "## Exceptions to the size rules" in docs/architecture.md:
    first cell `path` (a module) or `path::function` (a function)."""
    text = ARCH.read_text()
    m = re.search(r"^## Exceptions to the size rules\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, "docs/architecture.md has no '## Exceptions to the size rules' section"
    out = set()
    for line in m.group(1).splitlines():
        cell = re.match(r"^\|\s*`([^`]+)`\s*\|\s*\S", line)
        if cell:
            out.add(cell.group(1))
    return out


def _python_sizes() -> Iterator[tuple[str, int]]:
    for path in sorted(PKG.rglob("*.py")):
        rel = "python/" + path.relative_to(PKG.parent).as_posix()
        text = path.read_text()
        yield rel, len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{rel}::{node.name}", _code_lines(node)


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function from its first decorator to its end, without its docstring (a
    public function's numpydoc text is documentation, not logic to read through)."""
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    n = int(node.end_lineno or node.lineno) - start + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        n -= int(first.end_lineno or first.lineno) - first.lineno + 1
    return n


_RUST_FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:unsafe\s+)?(?:extern\s+\"C\"\s+)?fn\s+(\w+)")


def _rust_sizes(root: Path = ROOT) -> Iterator[tuple[str, int]]:
    """Rust files (outside tests) and their functions, by brace matching from each ``fn``."""
    for path in sorted((root / "rust").rglob("src/**/*.rs")):
        rel = path.relative_to(root).as_posix()
        lines = path.read_text().splitlines()
        # Unit tests at the bottom (#[cfg(test)] mod tests) do not count towards the module.
        body = next((i for i, ln in enumerate(lines) if ln.strip() == "#[cfg(test)]"), len(lines))
        yield rel, body
        for i, ln in enumerate(lines[:body]):
            m = _RUST_FN.match(ln)
            if not m:
                continue
            depth, opened, j = 0, False, i
            while j < body:
                code = lines[j].split("//")[0]
                depth += code.count("{") - code.count("}")
                opened = opened or "{" in code
                if opened and depth <= 0 or (not opened and code.rstrip().endswith(";")):
                    break
                j += 1
            yield f"{rel}::{m.group(1)}", j - i + 1


def _oversized(items: Iterator[tuple[str, int]]) -> list[str]:
    return [
        f"{key} ({n} lines)"
        for key, n in items
        if n > (MAX_FUNCTION_LINES if "::" in key else MAX_MODULE_LINES)
    ]


def test_sizes_within_limits_or_listed() -> None:
    allowed = _listed_exceptions()
    over = _oversized(_python_sizes())
    if (ROOT / "rust").is_dir():
        over += _oversized(_rust_sizes())
    unlisted = [o for o in over if o.split(" (")[0] not in allowed]
    assert not unlisted, (
        f"over {MAX_MODULE_LINES} lines per module / {MAX_FUNCTION_LINES} per function and not listed "
        "in docs/architecture.md:\n" + "\n".join(unlisted)
    )


def test_listed_exceptions_are_still_needed() -> None:
    """An exception that no longer exceeds the limit (or names a file that is gone) is removed
    from the list, so the list stays true."""
    items = dict(_python_sizes())
    if (ROOT / "rust").is_dir():
        items.update(_rust_sizes())
    stale = [
        e
        for e in _listed_exceptions()
        if e not in items or items[e] <= (MAX_FUNCTION_LINES if "::" in e else MAX_MODULE_LINES)
    ]
    assert not stale, "listed in docs/architecture.md but within limits or gone:\n" + "\n".join(sorted(stale))


def test_the_size_checks_see_long_code(tmp_path: Path) -> None:
    """The walkers measure what they claim: a 90-line Python function and a 90-line Rust fn."""
    py = 'def f():\n    """Doc\n\n    text.\n    """\n' + "    x = 1\n" * 90
    fn = next(n for n in ast.walk(ast.parse(py)) if isinstance(n, ast.FunctionDef))
    assert _oversized(iter([("m.py::f", _code_lines(fn))])) == ["m.py::f (91 lines)"]
    rs = tmp_path / "rust" / "src"
    rs.mkdir(parents=True)
    (rs / "k.rs").write_text("pub fn g(x: u8) -> u8 {\n" + "    let _ = { x };\n" * 90 + "    x\n}\n#[cfg(test)]\nmod tests {}\n")
    assert dict(_rust_sizes(tmp_path)) == {"rust/src/k.rs": 93, "rust/src/k.rs::g": 93}
