"""List every function in stts_core/ (or the given paths) with its length in lines; exit 1 if any is longer than --max.

    python scripts/function_lengths.py [--max 60] [--over] [PATH ...]

Length counts from the `def` line to the function's last line (docstring, comments and blank lines
inside included; decorators not). Methods and nested functions are listed on their own, as
`Class.method` and `outer.inner`.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATHS = [ROOT / "stts_core", ROOT / "app"]


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function in `tree`, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + node.name
            yield name, node.lineno, node.end_lineno - node.lineno + 1
            yield from functions(node, name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, prefix + node.name + ".")
        else:
            yield from functions(node, prefix)


def python_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def measure(paths: list[Path]) -> list[tuple[str, str, int, int]]:
    """(file, function, line, length) for every function under `paths`."""
    rows = []
    for file in python_files(paths):
        tree = ast.parse(file.read_text(), filename=str(file))
        resolved = file.resolve()
        shown = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else file
        rows.extend((str(shown), name, line, length) for name, line, length in functions(tree))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", type=Path, default=DEFAULT_PATHS, help="files or folders (default: stts_core/)")
    p.add_argument("--max", type=int, default=60, help="longest allowed function, in lines (default 60)")
    p.add_argument("--over", action="store_true", help="list only the functions longer than --max")
    args = p.parse_args(argv)
    missing = [str(x) for x in args.paths if not x.exists()]
    if missing:
        p.error(f"no such file or folder: {', '.join(missing)}")
    try:
        rows = measure(args.paths)
    except SyntaxError as err:
        p.error(f"cannot parse {err.filename}: {err.msg} (line {err.lineno})")
    over = [r for r in rows if r[3] > args.max]
    for file, name, line, length in over if args.over else rows:
        print(f"{length:5d}  {file}:{line}  {name}{'  OVER' if length > args.max else ''}")
    print(f"{len(rows)} functions, {len(over)} longer than {args.max} lines")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
