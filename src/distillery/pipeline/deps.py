"""Which library modules a stage script runs: its import closure, read statically from the source.

dvc.yaml lists the modules each stage uses as deps, so a code change reruns exactly what it affects.
This walks `import distillery…` / `from distillery… import …` statements (at any depth, lazy imports
inside functions included) from the stage script, and adds the providers a stage can load by name
(providers.base.REGISTRY) once the provider interface is in its closure. tests/test_deps.py fails
when dvc.yaml misses one of them, and `python -m distillery.pipeline.deps` prints what each stage needs.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "distillery"


def _module_file(name: str, src: Path) -> Path | None:
    base = src / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imported_names(path: Path) -> set[str]:
    """Module names under `distillery` that `path` imports (`from a.b import c` may mean module a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _registry_modules() -> set[str]:
    from distillery.providers.base import REGISTRY

    return {target.split(":")[0] for target in REGISTRY.values()}


def import_closure(script: Path, src: Path) -> set[Path]:
    """Every file of the library (relative to the repository root) that running `script` may import."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        names = _imported_names(path)
        if path.name == "base.py" and path.parent.name == "providers":
            names |= _registry_modules()  # providers are loaded by the name params give
        for name in names:
            parts = name.split(".")
            for i in range(2, len(parts) + 1):  # a package's __init__ runs before its modules
                found = _module_file(".".join(parts[:i]), src)
                if found is not None and found not in seen:
                    seen.add(found)
                    todo.append(found)
    root = src.parent
    return {p.relative_to(root) for p in seen}


def stage_script(cmd: str) -> str | None:
    """`stages/<name>.py` from a stage's command line (`python stages/label.py --corpus …`)."""
    return next((w for w in cmd.split() if w.startswith("stages/") and w.endswith(".py")), None)


def missing_deps(stage: dict, root: Path) -> tuple[list[str], list[str]]:
    """(library modules the stage imports that its deps do not cover, src deps it does not use)."""
    script = stage_script(stage["cmd"])
    used = import_closure(root / script, root / "src") if script else set()
    deps = [Path(d) for d in stage.get("deps", []) if str(d).startswith("src/")]
    missing = sorted(str(m) for m in used if not any(m == d or d in m.parents for d in deps))
    stale = sorted(str(d) for d in deps if not any(m == d or d in m.parents for m in used))
    return missing, stale


def main() -> None:
    import yaml

    root = Path.cwd()
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        script = stage_script(stage["cmd"])
        used = sorted(str(p) for p in import_closure(root / script, root / "src")) if script else []
        print(f"{name}:\n" + "".join(f"  - {p}\n" for p in used))


if __name__ == "__main__":
    main()
