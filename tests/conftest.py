"""Test-wide settings."""

from __future__ import annotations

import os

# Notebooks read their scale from this variable; the test run keeps them small.
# (nbmake starts each notebook's kernel with this process's environment.)
os.environ.setdefault("PAYFLOW_NOTEBOOK_SCALE", "small")
