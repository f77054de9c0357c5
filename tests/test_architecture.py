"""The package's shape, measured with ``ast`` (issue 11's acceptance, kept true):
short functions, layers as folders, no private names imported across modules, no
import cycle (imports inside functions count), ``__all__`` equal to the public names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "taskrel"
MAX_FUNCTION_LINES = 120
MAX_ENGINE_LINES = 60
MAX_TOP_MODULES = 14
MIN_SUBPACKAGES = 4


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()
TREES = {name: ast.parse(p.read_text(), str(p)) for name, p in MODULES.items()}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (before its imported names)."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(importer: str) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) for every import of a taskrel module."""
    out = []
    for node in ast.walk(TREES[importer]):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names
                    if a.name.split(".")[0] == "taskrel"]
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(importer, node)
            if mod.split(".")[0] != "taskrel":
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.append((sub, None, node.lineno) if sub in MODULES
                           else (mod, a.name, node.lineno))
    return out


def _private_part(module: str) -> str | None:
    """The package that owns the first private component of ``module``, if any."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function from ``def`` to its end, less its docstring (the measure of
    the architecture review: signature and body count, documentation does not)."""
    n = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        n -= first.end_lineno - first.lineno + 1
    return n


def test_no_function_is_longer_than_the_limit():
    long = []
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(node)
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert long == []


def test_the_engine_entry_point_is_short():
    tree = TREES["taskrel.relatedness.engine"]
    (fn,) = [n for n in tree.body
             if isinstance(n, ast.FunctionDef) and n.name == "task_relatedness"]
    assert _code_lines(fn) <= MAX_ENGINE_LINES


def test_layers_are_folders():
    top = [p for p in PKG.glob("*.py")]
    subs = [p for p in PKG.iterdir() if (p / "__init__.py").is_file()]
    assert len(top) <= MAX_TOP_MODULES, sorted(p.name for p in top)
    assert len(subs) >= MIN_SUBPACKAGES, sorted(p.name for p in subs)


def test_no_private_name_is_imported_across_modules():
    bad = []
    for importer in MODULES:
        for mod, name, line in _imports(importer):
            if name is not None and name.startswith("_") and not name.startswith("__"):
                bad.append(f"{importer}:{line} imports {name} from {mod}")
            owner = _private_part(mod)
            if owner is not None and not (importer == owner
                                          or importer.startswith(owner + ".")):
                bad.append(f"{importer}:{line} reaches into private module {mod}")
    assert bad == []


def test_no_import_cycle():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for importer in MODULES:
        for mod, _, _ in _imports(importer):
            target = mod if mod in MODULES else mod.rsplit(".", 1)[0]
            if target in MODULES and target != importer:
                graph[importer].add(target)
    # Tarjan-free check: depth-first search with colours.
    colour: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        colour[m] = 1
        for n in sorted(graph[m]):
            if colour.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n] if n in stack else [m, n])
            elif n not in colour:
                visit(n, stack + [n])
        colour[m] = 2

    for m in sorted(graph):
        if m not in colour:
            visit(m, [m])
    assert cycles == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_all_lists_exactly_the_public_names(module):
    tree = TREES[module]
    declared = None
    public = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            declared = set(ast.literal_eval(node.value))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            public.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            # Re-exports ("x as x") are public names of the module that makes them.
            public |= {a.asname for a in node.names if a.asname == a.name}
    public = {n for n in public if not n.startswith("_")}
    if declared is None:
        assert not public or module.split(".")[-1].startswith("_") or any(
            p.startswith("_") for p in module.split(".")), \
            f"{module} defines public names but no __all__: {sorted(public)}"
        return
    # __all__ may add public constants; every listed name must exist, and every public
    # function and class must be listed.
    defined = set(public)
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        defined |= {t.id for t in targets if isinstance(t, ast.Name)}
    assert declared - defined == set(), f"listed but not defined: {declared - defined}"
    assert public - declared == set(), f"public but not listed: {public - declared}"
