"""Score new data with the trained student: dimension scores, weighted score and tier per record.

    python -m distillery predict --input new.jsonl --output scored.jsonl [--model-dir models/student]
    make predict IN=new.jsonl OUT=scored.jsonl

Reads records in the usual contract (a bad line names its file and line), adds `predicted`
{labels: {dimension: score}, score, tier, model} to each, and writes them in the same order. The
weights, gatekeepers and tiers come from params.yaml's `filter`, which must name the dimensions the
student was trained on.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m distillery", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("predict", help="score a JSONL file with the trained student")
    pr.add_argument("--input", required=True, type=Path, help="records to score (JSONL)")
    pr.add_argument("--output", required=True, type=Path, help="where to write them, with `predicted`")
    pr.add_argument("--model-dir", default=Path("models/student"), type=Path, help="the trained student")
    pr.add_argument("--params", default=Path("params.yaml"), type=Path, help="for the filter's weights and tiers")
    args = ap.parse_args(argv)

    from distillery.labeling.scoring import tier_of, weighted_score
    from distillery.params import load_params
    from distillery.records import load_records, write_records
    from distillery.training.regression import META_FILE, predict

    if not (args.model_dir / META_FILE).exists():
        raise SystemExit(f"predict: no trained student in {args.model_dir} (run `dvc repro train` first)")
    filt = load_params(args.params).filter
    trained_on = json.loads((args.model_dir / META_FILE).read_text())["dimensions"]
    if trained_on != list(filt.dimensions):
        raise SystemExit(f"predict: the student was trained on {trained_on}, params.yaml's filter names "
                         f"{list(filt.dimensions)}: retrain, or point --params at the params it was trained with")
    records = load_records(args.input)
    scores = predict(records, args.model_dir)
    out = []
    for r, row in zip(records, scores.tolist()):
        labels = {d: round(v, 4) for d, v in zip(trained_on, row)}
        score = weighted_score(labels, filt)
        out.append({**r, "predicted": {"labels": labels, "score": score, "tier": tier_of(score, filt),
                                       "model": str(args.model_dir)}})
    write_records(args.output, out)
    print(f"predict: {len(out)} records scored into {args.output}")


if __name__ == "__main__":
    main()
