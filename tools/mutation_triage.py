"""Sort mutmut's survivors into message-only, event-only and logic mutants.

Usage (from the repository root, after ``mutmut run``)::

    mutmut results > RESULTS.txt
    python tools/mutation_triage.py mutants RESULTS.txt

Prints the counts and, per function, how many logic survivors it has; writes
every logic survivor with its diff to ``mutation-logic.txt``. A mutant is
*message-only* when its function differs from the original only in string
literals (error texts), *event-only* when every changed line builds a hook
event or a log call; everything else is *logic* and needs a test or a reason.
"""

from __future__ import annotations

import ast
import collections
import difflib
import re
import sys
from pathlib import Path

EVENT_MARKERS = ("Attempt(", "Retry(", "GaveUp(", "Poll(", "StateChanged(", "_log.")


class _Strings(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, str):
            return ast.copy_location(ast.Constant("S"), node)
        return node


def _body(node: ast.AST, strip_strings: bool) -> str:
    tree = ast.parse(ast.unparse(node))
    if strip_strings:
        tree = _Strings().visit(tree)
    first = tree.body[0]
    assert isinstance(first, ast.FunctionDef | ast.AsyncFunctionDef)
    return ast.dump(ast.Module(body=first.body, type_ignores=[]))


def _functions(root: Path) -> dict[str, tuple[ast.AST, list[str]]]:
    found: dict[str, tuple[ast.AST, list[str]]] = {}
    for path in (root / "payflow").rglob("*.py"):
        text = path.read_text()
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and "__mutmut_" in node.name
            ):
                span = lines[node.lineno - 1 : node.end_lineno]
                found[f"{module}.{node.name}"] = (node, span)
    return found


def main(root: Path, results: Path) -> None:
    status: dict[str, str] = {}
    for line in results.read_text().splitlines():
        name, sep, state = line.strip().rpartition(":")
        if sep:
            status[name.strip()] = state.strip()
    functions = _functions(root)
    kinds: dict[str, list[tuple[str, str, str]]] = collections.defaultdict(list)
    for name, state in status.items():
        if state not in ("survived", "no tests"):
            continue
        base = re.sub(r"__mutmut_\d+$", "__mutmut_orig", name)
        if name not in functions or base not in functions:
            kinds["unknown"].append((name, state, ""))
            continue
        (mutant, mutant_lines), (original, original_lines) = functions[name], functions[base]
        short_m, short_o = name.rsplit(".", 1)[1], base.rsplit(".", 1)[1]
        new = [line.replace(short_m, "F") for line in mutant_lines]
        old = [line.replace(short_o, "F") for line in original_lines]
        changed = [
            line
            for line in difflib.unified_diff(old, new, lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        if _body(mutant, True) == _body(original, True):
            kind = "message"
        elif all(any(marker in line for marker in EVENT_MARKERS) for line in changed):
            kind = "event"
        else:
            kind = "logic"
        kinds[kind].append((name, state, "\n".join(changed)))
    for kind, items in kinds.items():
        print(f"== {kind}: {len(items)}")
    per_function = collections.Counter(
        re.sub(r"__mutmut_\d+$", "", name) for name, _, _ in kinds["logic"]
    )
    for function, count in per_function.most_common():
        print(f"{count:4d} {function}")
    with open("mutation-logic.txt", "w") as out:
        for name, state, diff in sorted(kinds["logic"]):
            out.write(f"### {name} ({state})\n{diff}\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
