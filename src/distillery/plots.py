"""Figures that open offline: Vega-Lite specs rendered to SVG by vl-convert (its own Vega, no browser,
no CDN). `dvc plots show` draws its HTML with Vega from a CDN, a blank page without a network.

The evaluation report embeds the training curves and the student-vs-oracle scatter as SVG files beside
it; `make plots` renders every plot dvc.yaml declares, for the workspace or across experiments
(`dvc plots show|diff --json`), into one HTML page that needs no network.

    python -m distillery.plots [REV ...] [--out dvc_plots/offline.html]
"""
from __future__ import annotations

import argparse
import html
import json
import subprocess
from pathlib import Path

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
# The scatter DVC draws for plots/test_predictions.json (dvc.yaml names it): points, the y = x line, and
# both axes over the same range, so a student that is right lies on the diagonal.
SCATTER_TEMPLATE = Path(".dvc/plots/diagonal_scatter.json")


def svg(spec: dict) -> str:
    import vl_convert

    return vl_convert.vegalite_to_svg(static(spec))


def static(node):
    """The spec without its interactions (zoom, pan, hover, sliders: DVC's templates have them), which a
    still image cannot use and vl-convert rejects in layered charts ("Duplicate signal name")."""
    def uses_param(x) -> bool:
        return isinstance(x, dict) and "param" in x

    if isinstance(node, list):
        return [static(v) for v in node if not (isinstance(v, dict) and uses_param(v.get("filter")))]
    if isinstance(node, dict):
        out = {k: static(v) for k, v in node.items() if k != "params" and not (k == "condition" and uses_param(v))}
        values = [{"name": p["name"], "value": p["value"]} for p in node.get("params") or []
                  if isinstance(p, dict) and "value" in p and "select" not in p]  # e.g. smooth: keep its value
        return {**out, "params": values} if values else out
    return node


def fill(template: dict, **anchors) -> dict:
    """A DVC plot template with its <DVC_METRIC_…> anchors set (those not given are left empty)."""
    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and node.startswith("<DVC_METRIC_") and node.endswith(">"):
            name = node[len("<DVC_METRIC_"):-1].lower()
            return anchors.get(name, [] if name == "tooltip" else {})
        return node

    return walk(template)


def scatter_spec(points: list[dict], x: str, y: str, title: str, template: Path = SCATTER_TEMPLATE) -> dict:
    spec = fill(json.loads(template.read_text()), data=points, x=x, y=y, x_label=x, y_label=y, title=title)
    return spec


def curves_spec(rows: list[dict], title: str, y_title: str) -> dict:
    """Lines over training steps, one per `series` (e.g. train RMSE, val MAE, the baseline's val MAE)."""
    return {"$schema": SCHEMA, "title": title, "width": 420, "height": 240, "data": {"values": rows},
            "mark": {"type": "line", "point": True},
            "encoding": {"x": {"field": "step", "type": "quantitative"},
                         "y": {"field": "value", "type": "quantitative", "title": y_title},
                         "color": {"field": "series", "type": "nominal", "title": None}}}


def write_svg(path: Path, spec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg(spec), encoding="utf-8")


def dvc_specs(revs: list[str]) -> dict[str, list[dict]]:
    """Every plot dvc.yaml declares, as DVC fills it (data inline), for the workspace or the given revisions."""
    cmd = ["dvc", "plots", "diff", *revs, "--json"] if revs else ["dvc", "plots", "show", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"plots: `{' '.join(cmd)}` failed:\n{out.stderr.strip() or out.stdout.strip()}")
    shown = json.loads(out.stdout)
    for error in shown.get("errors") or []:
        print(f"plots: {error}")
    return {name: [p["content"] for p in plots if p.get("type") == "vega"]
            for name, plots in shown.get("data", {}).items()}


def offline_page(specs: dict[str, list[dict]], revs: list[str]) -> str:
    body = [f"<h1>Plots: {html.escape(', '.join(revs) or 'workspace')}</h1>"]
    for name, contents in specs.items():
        body += [f"<h2>{html.escape(name)}</h2>"] + [svg(c) for c in contents]
    return "<!doctype html><meta charset='utf-8'><title>distillery plots</title>\n" + "\n".join(body) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Render dvc.yaml's plots to one offline HTML page (no CDN).")
    ap.add_argument("revs", nargs="*", help="git revisions or experiment names to compare (default: the workspace)")
    ap.add_argument("--out", type=Path, default=Path("dvc_plots/offline.html"))
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(offline_page(dvc_specs(args.revs), args.revs), encoding="utf-8")
    print(f"plots: {args.out} (opens offline)")


if __name__ == "__main__":
    main()
