"""Diversity of a set of responses: how much of it is the same few phrases.

Linear-time figures are computed on the whole set: distinct-n (Li et al. 2016), exact and
near-duplicate rates, compression ratio, self-repetition of 4-grams. The embedding-based Vendi score
(Friedman & Dieng 2023) is quadratic in the sample, so it uses a seeded sample.
"""
from __future__ import annotations

import gzip
import math
import random
from collections import Counter

from distillery.text.neardup import find_near_duplicates
from distillery.text.tokens import words


def distinct_n(texts: list[str], n: int, tokens: list[list[str]] | None = None) -> float:
    """Distinct n-grams / all n-grams over the set: 1.0 means no n-gram repeats."""
    seen, total = set(), 0
    for w in tokens or map(words, texts):
        grams = [tuple(w[i:i + n]) for i in range(len(w) - n + 1)] if n > 1 else w
        seen.update(grams)
        total += len(grams)
    return round(len(seen) / total, 4) if total else 0.0


def compression_ratio(texts: list[str]) -> float:
    """Raw bytes / gzip bytes of the whole set: repetitive sets compress better (a higher ratio)."""
    raw = "\n".join(texts).encode()
    return round(len(raw) / len(gzip.compress(raw, 6)), 4) if raw else 0.0


def self_repetition(texts: list[str], n: int = 4, tokens: list[list[str]] | None = None) -> float:
    """Share of responses' n-gram occurrences whose n-gram also occurs in another response."""
    per_doc = [set(tuple(w[i:i + n]) for i in range(len(w) - n + 1)) for w in tokens or map(words, texts)]
    df = Counter(g for grams in per_doc for g in grams)
    total = sum(len(g) for g in per_doc)
    return round(sum(df[g] > 1 for grams in per_doc for g in grams) / total, 4) if total else 0.0


def vendi_score(texts: list[str], model: str, sample: int, seed: int) -> float:
    """exp(entropy of the eigenvalues of the cosine-similarity matrix / n): the effective number of
    distinct responses in a seeded sample (1 = all alike, n = all orthogonal), on MiniLM embeddings;
    0 for no texts at all."""
    if not texts:
        return 0.0
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from distillery.modelpath import resolve_model_path

    picked = random.Random(seed).sample(texts, min(sample, len(texts)))
    path = resolve_model_path(model)
    tok, enc = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    rows = []
    with torch.no_grad():
        for start in range(0, len(picked), 64):
            batch = tok(picked[start:start + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = enc(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            rows.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy())
    x = np.concatenate(rows).astype(np.float64)
    eig = np.linalg.eigvalsh(x @ x.T / len(x))
    eig = eig[eig > 1e-12]
    return round(float(math.exp(-(eig * np.log(eig)).sum())), 4)


def diversity_metrics(texts: list[str], cfg=None, near=None) -> dict:
    """Every diversity figure; `cfg` (DiversityParams) adds near-duplicates (reusing `near`, the
    NearDuplicates of these texts, when the caller has it) and, if vendi_sample > 0, Vendi."""
    tokens = [words(t) for t in texts]  # tokenised once for every figure below
    out = {f"distinct_{n}": distinct_n(texts, n, tokens) for n in (1, 2, 3)}
    out["exact_duplicate_rate"] = round(1 - len(set(texts)) / len(texts), 4) if texts else 0.0
    out["compression_ratio"] = compression_ratio(texts)
    out["self_repetition_4gram"] = self_repetition(texts, 4, tokens)
    if cfg is not None:
        nd = near or find_near_duplicates(texts, shingle=cfg.shingle, num_perm=cfg.num_perm,
                                          threshold=cfg.threshold, seed=cfg.seed)
        out["near_duplicate_rate"] = round(sum(len(c) - 1 for c in nd.clusters) / len(texts), 4) if texts else 0.0
        out["near_duplicate_clusters"] = len(nd.clusters)
        if cfg.vendi_sample:
            out["vendi"] = vendi_score(texts, cfg.embedding_model, cfg.vendi_sample, cfg.seed)
            out["vendi_sample"] = min(cfg.vendi_sample, len(texts))
    return out
