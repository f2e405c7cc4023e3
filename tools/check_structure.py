"""Structure checks that import-linter's layers contract cannot make (run by ./task lint).

1. No import cycle anywhere in ``enclave``: the layers contract sees only imports
   between layers, not a cycle inside one. Every import counts, lazy ones inside
   functions and ``TYPE_CHECKING`` ones included (grimp, import-linter's graph library,
   finds them all; the standard library's graphlib finds the cycle).
2. No module over :data:`MAX_LINES` lines in ``src/`` and ``bench/``.

Exit status 1 and one line per finding when either fails.
"""

from __future__ import annotations

import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "enclave"
MAX_LINES = 600
SIZED = ("src", "bench")


def import_graph() -> dict[str, set[str]]:
    """Each module of :data:`PACKAGE` → the modules of it that it imports."""
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles, one per strongly connected part found."""
    found: list[list[str]] = []
    remaining = {m: set(deps) for m, deps in graph.items()}
    while True:
        try:
            TopologicalSorter(remaining).prepare()
        except CycleError as error:
            cycle: list[str] = error.args[1][::-1]  # graphlib lists it importer last
            found.append(cycle)
            remaining[cycle[0]].discard(cycle[1])  # cut one import, look for the next
            continue
        return found


def large_modules() -> list[tuple[str, int]]:
    """Modules over :data:`MAX_LINES` lines."""
    found = []
    for top in SIZED:
        for path in sorted((ROOT / top).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                found.append((name, lines))
    return found


def main() -> int:
    sys.path.insert(0, str(ROOT / "src"))
    problems = [f"import cycle: {' -> '.join(c)}" for c in cycles(import_graph())]
    problems += [f"{name}: {n} lines (at most {MAX_LINES})" for name, n in large_modules()]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"no import cycle in {PACKAGE}; no module over {MAX_LINES} lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
