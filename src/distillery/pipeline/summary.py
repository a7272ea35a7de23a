"""What the last `dvc repro` left: one line per stage from its headline metrics, in pipeline order.
`make demo`, `make repro` and `make metrics` print it; `dvc metrics show` has the same figures as a table.

    python -m distillery.pipeline.summary [--dvc-yaml dvc.yaml]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml


def flat(node: dict, prefix: str = "") -> list[tuple[str, object]]:
    items = []
    for key, value in node.items():
        if isinstance(value, dict):
            items += flat(value, f"{prefix}{key}.")
        else:
            items.append((prefix + key, value))
    return items


def show(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary(dvc_yaml: Path) -> str:
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    lines = []
    for name, stage in stages.items():
        for path in (Path(m if isinstance(m, str) else next(iter(m))) for m in stage.get("metrics", [])):
            if not path.exists():
                lines.append(f"{name:<17} (not run yet: {path} is missing)")
                continue
            figures = flat(json.loads(path.read_text()))
            verdict = dict(figures).get("verdict")
            rest = ", ".join(f"{k} {show(v)}" for k, v in figures if k != "verdict")
            lines.append(f"{name:<17} {verdict + '  ' if verdict else ''}{rest}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    print(summary(ap.parse_args(argv).dvc_yaml))


if __name__ == "__main__":
    main()
