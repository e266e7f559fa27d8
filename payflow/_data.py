"""The files shipped in ``data/`` (the package ``payflow.data``): names and TOML loading.

Fault profiles and scenarios are both "a shipped name, or a path to a .toml file";
this is the one place that resolves either into parsed TOML with a source to
name in error messages.
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

__all__ = ["load_toml", "shipped_names"]


def shipped_names(folder: str) -> list[str]:
    """Names of the ``.toml`` files in ``data/<folder>/``, sorted, without the suffix."""
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in (files("payflow.data") / folder).iterdir()
        if entry.name.endswith(".toml")
    )


def load_toml(folder: str, name: str, kind: str) -> tuple[dict[str, Any], str]:
    """Parsed TOML of a shipped ``name`` (or of a ``.toml`` path), and its source label.

    Raises :class:`LookupError` naming the valid ``kind`` names for an unknown
    name, and :class:`ValueError` naming the file for TOML that does not parse.
    """
    if name.endswith(".toml") and Path(name).is_file():
        path = Path(name)
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        names = shipped_names(folder)
        if name not in names:
            raise LookupError(f"unknown {kind} {name!r} (valid: {', '.join(names)})")
        text = (files("payflow.data") / folder / f"{name}.toml").read_text(encoding="utf-8")
        source = f"data/{folder}/{name}.toml"
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not valid TOML: {exc}") from None
