"""The first-party import graph of a package, read from its source with ``ast`` (nothing is imported).

    from tests.import_graph import import_graph, find_cycle
    graph = import_graph("trajvlm")               # {"trajvlm.serve.app": {"trajvlm.inference", ...}, ...}
    assert find_cycle(graph) is None

Every ``import`` / ``from ... import`` statement counts, at module level and inside functions (``lazy``), except
those under ``if TYPE_CHECKING:`` (never run). ``from a.b import c`` points at the module ``a.b.c`` when that is a
module of the package, else at ``a.b``; relative imports are resolved. Importing a sub-module implicitly imports
its parent packages too; those implicit edges are not in the graph (they would make every package ``__init__`` that
re-exports a sub-module look like a cycle).
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    """One import statement's target as seen from ``module`` (``line`` in its file; ``lazy``: inside a function)."""

    module: str
    target: str
    line: int
    lazy: bool


def package_dir(package: str) -> Path:
    """The folder of an importable package, found without importing the package itself (its parent, if any, is)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{package!r} is not an importable package")
    return Path(next(iter(spec.submodule_search_locations)))


def module_files(package: str, root: Path | None = None) -> dict[str, Path]:
    """Every module of ``package`` (sub-packages included; ``root`` is its folder, found by name when omitted)."""
    root = package_dir(package) if root is None else Path(root)
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if any(not part.isidentifier() for part in parts):
            continue  # not importable (e.g. a folder of data files with a dash)
        if any(not (root.joinpath(*parts[:i]) / "__init__.py").exists() for i in range(1, len(parts))):
            continue  # under a folder that is not a package
        name = ".".join((package, *parts))
        modules[name.removesuffix(".__init__")] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """The import statements of a module with whether each sits inside a function; TYPE_CHECKING blocks skipped."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit(other, lazy)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, lazy))
            visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def module_imports(
    module: str, path: Path, is_package: bool, known: set[str] | frozenset[str] = frozenset()
) -> list[Import]:
    """Every import of one module file (any package, not only first-party ones), with relative ones resolved.

    ``known`` lists the modules of the package so that ``from pkg import sub`` points at ``pkg.sub``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module if is_package else module.rpartition(".")[0]  # the package relative imports start from
    imports: list[Import] = []
    for node, lazy in _statements(tree):
        if isinstance(node, ast.Import):
            imports.extend(Import(module, alias.name, node.lineno, lazy) for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            parts = here.split(".")
            if node.level - 1 >= len(parts):
                raise ValueError(f"{path}:{node.lineno}: relative import goes above the top-level package")
            anchor = ".".join(parts[: len(parts) - (node.level - 1)])
            base = f"{anchor}.{base}" if base else anchor
        for alias in node.names:
            full = f"{base}.{alias.name}"
            imports.append(Import(module, full if full in known else base, node.lineno, lazy))
    return imports


def all_imports(package: str, root: Path | None = None) -> list[Import]:
    """Every import statement of every module of ``package``."""
    files = module_files(package, root)
    known = set(files)
    imports: list[Import] = []
    for name, path in files.items():
        imports.extend(module_imports(name, path, path.name == "__init__.py", known))
    return imports


def import_graph(
    package: str, root: Path | None = None, *, first_party: tuple[str, ...] | None = None, lazy: bool = True
) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports (``first_party``: top-level names, default ``package``'s).

    Every module of ``package`` is a key (an empty set when it imports nothing first-party). ``lazy=False`` keeps
    only module-level imports. Targets outside ``package`` (another first-party package) appear as written."""
    tops = first_party or (package.split(".")[0],)
    graph: dict[str, set[str]] = {name: set() for name in module_files(package, root)}
    for imp in all_imports(package, root):
        if (lazy or not imp.lazy) and imp.target.split(".")[0] in tops and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or None when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` reaches through the graph (itself excluded unless on a cycle)."""
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen
