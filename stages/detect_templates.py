"""detect_templates: find templated final answers (known phrases and regexes, mined sentence frames and
word spans, near-duplicate clusters); keep the first max_templates of each pattern, flag the rest.

    python stages/detect_templates.py --corpus data/raw/corpus.jsonl \
        --patterns data/templates/patterns.json --flagged data/templates/flagged.jsonl \
        --metrics metrics/templates.json --details reports/details/templates.json \
        --report reports/templates.md --figure reports/figures/overrepresented.svg

The report also lists the words and phrases most over-represented against human text (text/overrep.py):
a warning, flagged only with detect_templates.overrep_flag.
"""
import argparse
import os
import json
from collections import Counter
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.text.diversity import diversity_metrics
from distillery.text.neardup import find_near_duplicates
from distillery.params import load_params
from distillery.records import (load_records, read_records, render_context, subject_text, write_json, write_records,
                               write_text)
from distillery.reports import templates_report, write_metrics
from distillery.plots import write_svg
from distillery.text.overrep import overrep_section, overrep_spec, overrepresented, read_reference
from distillery.text.template_stream import detect_streaming
from distillery.text.templates import (build_patterns, flag_templated, near_duplicate_patterns, pattern_report,
                                  template_rate)


def main():
    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("corpus", "patterns", "flagged", "metrics", "details", "report"):
        ap.add_argument(f"--{name}", required=True, type=Path)
    ap.add_argument("--figure", type=Path, help="the over-represented phrases' figure (SVG)")
    ap.add_argument("--params", default="params.yaml", type=Path)
    args = ap.parse_args()
    params = load_params(args.params)
    cfg, div = params.detect_templates, params.diversity

    if cfg.streaming:
        return detect_streamed(args, cfg)
    records = load_records(args.corpus)
    ids = [r["id"] for r in records]
    texts = [subject_text(r) for r in records]
    contexts = [render_context(r, max_chars=10**6) for r in records]
    topics = [(r.get("tags") or {}).get("topic") for r in records]
    near = find_near_duplicates(texts, shingle=div.shingle, num_perm=div.num_perm, threshold=div.threshold,
                                seed=div.seed)
    patterns = build_patterns(texts, cfg, contexts, topics)
    patterns += near_duplicate_patterns(ids, texts, near.clusters, cfg)
    stock = stock_phrases(texts, contexts, cfg, args.figure)
    if cfg.overrep_flag:  # only when asked: the list is a warning, not a detector
        patterns += [{"id": f"overrep-{i}", "kind": "overrepresented", "text": r["ngram"], "variants": [r["ngram"]]}
                     for i, r in enumerate(stock) if r["words"] > 1]
    matches, flagged = flag_templated(ids, texts, patterns, cfg.max_templates)
    flagged_set = set(flagged)

    report = pattern_report(patterns, ids, matches, flagged_set)
    write_json(args.patterns, report)
    write_records(args.flagged, ({"id": rid, "patterns": pids} for rid, pids in zip(ids, matches)
                                 if rid in flagged_set))
    write_metrics("templates", args.metrics, args.details, {
        "responses": len(texts), "patterns": len(patterns),
        "patterns_by_kind": dict(Counter(p["kind"] for p in patterns)),
        "templated": sum(bool(m) for m in matches), "template_rate": template_rate(matches),
        "flagged": len(flagged), "flagged_rate": round(len(flagged) / max(1, len(texts)), 4),
        "max_templates": cfg.max_templates, "overrepresented": stock, **diversity_metrics(texts, div, near)})
    write_text(args.report, templates_report(json.loads(args.details.read_text()), report, dict(zip(ids, texts)))
               + "\n".join(overrep_section(stock, _baseline(cfg), cfg.overrep_top,
                                            os.path.relpath(args.figure, args.report.parent) if stock and args.figure else None)) + "\n")
    print(f"detect_templates: {len(patterns)} patterns, template rate {template_rate(matches):.1%}, "
          f"{len(flagged)} flagged")


def stock_phrases(texts: list[str], contexts: list[str], cfg, figure: Path | None) -> list[dict]:
    """The top overrep_top over-represented words and phrases (text/overrep.py), drawn into `figure`."""
    reference = read_reference(cfg.overrep_reference) if cfg.overrep_reference else None
    rows = overrepresented(texts, contexts, reference=reference, min_docs=cfg.overrep_min_docs)[:cfg.overrep_top]
    if rows and figure is not None:
        write_svg(figure, overrep_spec(rows, cfg.overrep_top))
    elif not rows:
        _blank(figure)
    return rows


def _blank(figure: Path | None) -> None:
    """An empty SVG: the declared out exists when there is nothing to draw."""
    if figure is not None:
        figure.parent.mkdir(parents=True, exist_ok=True)
        figure.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\n', encoding="utf-8")


def _baseline(cfg) -> str:
    return f"counted in {cfg.overrep_reference}" if cfg.overrep_reference else "wordfreq's English word frequencies"


def detect_streamed(args, cfg):
    """Corpora too big for memory: the file is read three times and never held whole."""
    def source():
        return ((r["id"], subject_text(r), render_context(r, max_chars=10**6), (r.get("tags") or {}).get("topic"))
                for r in read_records(args.corpus))

    args.flagged.parent.mkdir(parents=True, exist_ok=True)
    with args.flagged.open("w", encoding="utf-8") as fh:
        patterns, metrics = detect_streaming(
            source, cfg, on_flag=lambda rid, pids: fh.write(json.dumps({"id": rid, "patterns": pids}) + "\n"))
    write_json(args.patterns, patterns)
    metrics = {**metrics, "max_templates": cfg.max_templates, "streaming": True}
    write_metrics("templates", args.metrics, args.details, metrics)
    examples = {p for pattern in patterns for p in pattern.get("example_ids", [])[:3]}
    texts = {r["id"]: subject_text(r) for r in read_records(args.corpus) if r["id"] in examples}
    write_text(args.report, templates_report(metrics, patterns, texts)
               + "\nThe over-represented words and phrases are not listed in streaming mode (they need the answers in memory).\n")
    _blank(args.figure)
    print(f"detect_templates (streaming): {len(patterns)} patterns, template rate {metrics['template_rate']:.1%}, "
          f"{metrics['flagged']} flagged")


if __name__ == "__main__":
    main()
