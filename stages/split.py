"""split: stratified (by tier), seeded, leakage-free train / val / test split of the labeled records.

    python stages/split.py --labeled data/labeled/labeled.jsonl --out-dir data/splits --metrics metrics/split.json
"""
import argparse
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.params import load_params, seed_everything
from distillery.records import require_records, write_records
from distillery.reports import write_metrics
from distillery.training.splitting import near_duplicate_groups, split_metrics, stratified_split


def main():
    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("labeled", "out_dir", "metrics", "details"):
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml", type=Path)
    args = ap.parse_args()
    params = load_params(args.params)
    cfg = params.split
    seed_everything(cfg.seed)

    records = require_records(args.labeled, stage="split", producer="label", need=3,
                              hint="See data/labeled/failures.jsonl and metrics/label.json.")
    groups, near_pairs = near_duplicate_groups(records, params.diversity)
    splits = stratified_split(records, cfg, groups)
    for name, records in splits.items():
        write_records(args.out_dir / f"{name}.jsonl", records)
    metrics = split_metrics(splits, near_pairs)
    write_metrics("split", args.metrics, args.details, metrics)
    print(f"split: {metrics['sizes']}, duplicates across splits {metrics['leakage_duplicates_across_splits']}, "
          f"near-duplicate pairs across splits {metrics['near_duplicate_pairs_across_splits']}")


if __name__ == "__main__":
    main()
