"""Test-wide settings."""

from __future__ import annotations

import os

# Notebooks read their scale from this variable; the test run keeps them small.
# (nbmake starts each notebook's kernel with this process's environment.)
os.environ.setdefault("PAYFLOW_NOTEBOOK_SCALE", "small")

# Under mutation testing (mutmut runs the tests from its mutants/ copy, every call
# through a trampoline) time limits measure mutmut, not the code: drop deadlines
# and run fewer examples. The default run keeps hypothesis' own settings.
if os.path.basename(os.getcwd()) == "mutants" or "MUTMUT_DEPENDENCY_DEPTH" in os.environ:
    from hypothesis import settings

    settings.register_profile("mutation", deadline=None, max_examples=30)
    settings.load_profile("mutation")
