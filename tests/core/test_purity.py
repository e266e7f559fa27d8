"""payflow.core must not do I/O, read clocks or use global randomness."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import payflow.core

FORBIDDEN = {
    "httpx",
    "simpy",
    "sqlite3",
    "time",
    "asyncio",
    "random",
    "socket",
    "threading",
    "datetime",
    "os",
    "uuid",
    "email",
    "urllib",
    "subprocess",
}
CORE = Path(payflow.core.__file__).parent


def test_importing_core_loads_no_io_or_clock_modules() -> None:
    code = (
        "import sys, json; before = set(sys.modules); import payflow.core; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert not loaded & FORBIDDEN, loaded & FORBIDDEN


def test_core_source_imports_nothing_forbidden() -> None:
    # `time` is loaded by the interpreter itself, so also check the source text.
    offenders = []
    for path in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_core_does_not_import_the_rest_of_payflow() -> None:
    for path in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("payflow")
            ):
                assert node.module.startswith("payflow.core"), (path.name, node.module)
