"""Pairwise comparisons (an LLM judge's or people's) in, win rates and Bradley–Terry strengths out.

    python -m distillery.judging summarize comparisons.jsonl [--json]

The comparison file: JSONL, one comparison of two systems' answers to one prompt a line.

    {"pair_id": "conv-0012", "a": "student", "b": "base", "len_a": 312, "len_b": 280,
     "verdict_ab": "a", "verdict_ba": "tie", "pref_ab": 0.8, "pref_ba": 0.45}

    pair_id           required string: the prompt both answers respond to; the bootstrap resamples these
    a, b              required strings, different: the two systems compared
    verdict_ab        required, "a" | "b" | "tie": the verdict with a's answer shown first
    verdict_ba        optional, "a" | "b" | "tie": the verdict with b's answer shown first, still naming
                      the winning *system* ("a" = system a won). Leave it out for a single-order rating
                      (a person, say): that line then says nothing about position bias
    len_a, len_b      optional numbers >= 0, both or neither: the answers' lengths (one unit per file),
                      for the length-controlled win rate
    pref_ab, pref_ba  optional soft P(a is better) in [0, 1], one per order judged: both or neither
                      when the line has verdict_ba
    judge             optional string: who judged; (pair_id, the two systems, judge) appears once
Other fields are ignored. A bad line is a RecordError naming file:line, as for corpus records.

What `summarize` reports, per pair of systems (in the orientation first seen: "student vs base" if the
first line naming both has a = student; lines the other way round are turned around), as fractions:
- W/T/L and win rate: a win counts only when both orders agree; orders that disagree make a tie;
  ties count half. Standard error as AlpacaEval reports it: std(ddof=1) / sqrt(n) of the 0/0.5/1 outcomes.
- flip rate: the share of two-order comparisons whose verdicts differ (flipped: one winner each way;
  half-flipped: a winner one way, a tie the other), and which position the flips favoured.
- LC win rate: the win rate a logistic GLM on tanh(scaled length difference) predicts at equal length.
- soft win rate (when the judge gave pref_*): the mean soft preference, AlpacaEval 2's default figure.
Over all systems: Bradley–Terry strengths (log-odds, sum to zero) with 95% bootstrap intervals.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillery.records import RecordError, read_jsonl

VERDICTS = {"a": 1.0, "tie": 0.5, "b": 0.0}  # a's score
BT_RIDGE = 1e-3  # L2 on strengths: fixes the sum-to-zero gauge; a system that always wins stays finite
LC_RIDGE = 1e-3  # L2 on the length GLM: a pair one system always wins gives ≈ 1.0, not a diverging fit


@dataclass(frozen=True)
class Comparison:
    """One checked line of the comparison file (`line` is its line number, for later errors)."""

    pair_id: str
    a: str
    b: str
    verdict_ab: str
    verdict_ba: str | None = None
    len_a: float | None = None
    len_b: float | None = None
    pref_ab: float | None = None
    pref_ba: float | None = None
    judge: str | None = None
    line: int = 0

    @property
    def score(self) -> float:
        """a's outcome: a win counts only when both orders agree; orders that disagree make a tie."""
        if self.verdict_ba is None or self.verdict_ab == self.verdict_ba:
            return VERDICTS[self.verdict_ab]
        return 0.5

    @property
    def agreement(self) -> str | None:
        """consistent (same verdict both orders), flipped (a won one order, b the other: the position
        decided), half_flipped (a winner in one order, a tie in the other); None for one order."""
        if self.verdict_ba is None:
            return None
        if self.verdict_ab == self.verdict_ba:
            return "consistent"
        return "flipped" if "tie" not in (self.verdict_ab, self.verdict_ba) else "half_flipped"

    @property
    def soft(self) -> float | None:
        prefs = [p for p in (self.pref_ab, self.pref_ba) if p is not None]
        return sum(prefs) / len(prefs) if prefs else None


def _field(record: dict, key: str, path, line: int, *, kind, required=False, check=None, why=""):
    value = record.get(key)
    if value is None:
        if required:
            raise RecordError(path, line, f"missing required field {key!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, kind) or (check and not check(value)):
        raise RecordError(path, line, f"field {key!r} must be {why}, got {value!r}")
    return value


def parse_comparison(record: object, path: Path | str, line: int) -> Comparison:
    """One line of the comparison file, checked; RecordError names the file, line and problem."""
    if not isinstance(record, dict):
        raise RecordError(path, line, f"expected a JSON object, got {type(record).__name__}")
    text = {"kind": str, "check": bool, "why": "a non-empty string"}
    verdict = {"kind": str, "check": VERDICTS.__contains__, "why": "one of 'a', 'b', 'tie'"}
    number = {"kind": (int, float), "check": lambda v: 0 <= v < float("inf"), "why": "a number >= 0"}
    prob = {"kind": (int, float), "check": lambda v: 0 <= v <= 1, "why": "a number in [0, 1]"}
    c = Comparison(
        pair_id=_field(record, "pair_id", path, line, required=True, **text),
        a=_field(record, "a", path, line, required=True, **text),
        b=_field(record, "b", path, line, required=True, **text),
        verdict_ab=_field(record, "verdict_ab", path, line, required=True, **verdict),
        verdict_ba=_field(record, "verdict_ba", path, line, **verdict),
        len_a=_field(record, "len_a", path, line, **number), len_b=_field(record, "len_b", path, line, **number),
        pref_ab=_field(record, "pref_ab", path, line, **prob), pref_ba=_field(record, "pref_ba", path, line, **prob),
        judge=_field(record, "judge", path, line, **text), line=line)
    if c.a == c.b:
        raise RecordError(path, line, f"a system compared with itself ({c.a!r})")
    if (c.len_a is None) != (c.len_b is None):
        raise RecordError(path, line, "give both len_a and len_b, or neither")
    if c.pref_ba is not None and c.verdict_ba is None:
        raise RecordError(path, line, "pref_ba without verdict_ba: b was never shown first")
    if c.verdict_ba is not None and (c.pref_ab is None) != (c.pref_ba is None):
        raise RecordError(path, line, "give pref_ab and pref_ba both, or neither: one order's preference "
                                      "alone carries that order's position bias")
    return c


def load_comparisons(path: Path | str) -> list[Comparison]:
    """Every comparison in the file; the first bad line (or a repeated comparison) is a RecordError."""
    seen: dict[tuple, int] = {}
    out = []
    for line, record in read_jsonl(path):
        c = parse_comparison(record, path, line)
        key = (c.pair_id, frozenset((c.a, c.b)), c.judge)
        if key in seen:
            raise RecordError(path, line, f"{c.a} vs {c.b} on {c.pair_id!r} again (first on line {seen[key]})"
                                          + ("" if c.judge else "; several raters? name each in 'judge'"))
        seen[key] = line
        out.append(c)
    if not out:
        raise ValueError(f"{path}: no comparisons")
    return out


def order_agreement(comparisons: list[Comparison]) -> dict:
    """How often the two orders disagree: the judge's position bias, and which position it favours."""
    kinds = [c.agreement for c in comparisons if c.agreement is not None]
    flipped = [c for c in comparisons if c.agreement == "flipped"]
    two = len(kinds)
    return {"two_order": two, "consistent": kinds.count("consistent"), "flipped": len(flipped),
            "half_flipped": kinds.count("half_flipped"),
            "flip_rate": (two - kinds.count("consistent")) / two if two else None,
            # A flip where a won with a shown first and b with b shown first: the first position won both.
            "flipped_to_first": sum(c.verdict_ab == "a" for c in flipped),
            "flipped_to_second": sum(c.verdict_ab == "b" for c in flipped)}


def mean_and_se(values: np.ndarray) -> tuple[float, float | None]:
    """Win rate and its standard error, as AlpacaEval reports them: the mean of the per-example
    preferences and pandas' Series.sem() of them, std(ddof=1) / sqrt(n).
    Followed: tatsu-lab/alpaca_eval src/alpaca_eval/metrics/helpers.py, BaseScoringRule.describe_head2head
    (win_rate=predictions.mean(), standard_error=predictions.sem(); both ×100 there, fractions here)."""
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None
    return float(values.mean()), se


def _sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))


def fit_logistic(X: np.ndarray, y: np.ndarray, weights: np.ndarray, ridge: float) -> np.ndarray:
    """Newton (IRLS) for a logistic regression with fractional targets y in [0, 1], batched over rows
    of `weights` (B, n): one fit per row (bootstrap resamples as case weights). Returns beta (B, k)."""
    beta = np.zeros((weights.shape[0], X.shape[1]))
    eye = ridge * np.eye(X.shape[1])
    for _ in range(100):
        p = _sigmoid(beta @ X.T)  # (B, n)
        grad = (weights * (y - p)) @ X - ridge * beta
        hess = np.einsum("bn,ni,nj->bij", weights * p * (1 - p), X, X) + eye
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return beta


def length_controlled(y: np.ndarray, delta_len: np.ndarray, weights: np.ndarray | None = None) -> dict | None:
    """AlpacaEval 2's length-controlled win rate, cut down to one pair of systems.

    AlpacaEval (tatsu-lab/alpaca_eval src/alpaca_eval/metrics/glm_winrate.py, formula length_controlled_v1)
    fits a logistic GLM of the preference on tanh(std_delta_len) + instruction_difficulty + a model
    indicator, std_delta_len = (len_1 - len_2) / std(len_1 - len_2) (scaled, not centred, so 0 still means
    equal length), and predicts with std_delta_len = 0. Here: the same model without instruction
    difficulty (it needs AlpacaEval's fitted per-prompt table), without the L1/cross-validation (a tiny
    L2 instead) and with the intercept as the system indicator (within one pair it is the constant a-vs-b
    column): logit P(a preferred) = b0 + b1 · tanh(Δlen / std(Δlen)), fitted by IRLS to the 0/0.5/1
    outcomes (log-loss with fractional targets: AlpacaEval gets the same by duplicating each row with
    labels 1 and 0 weighted y and 1 - y). LC win rate = sigmoid(b0), the predicted win rate at equal
    length. `weights` (B, n): also refit once per bootstrap resample; return the 95% percentile interval.
    None when the lengths cannot be told apart from the system (fewer than 3 comparisons, no spread in Δlen).
    """
    sd = delta_len.std(ddof=1) if len(delta_len) > 2 else 0.0
    if not sd > 0:
        return None
    X = np.column_stack([np.ones_like(delta_len), np.tanh(delta_len / sd)])
    b0, b1 = fit_logistic(X, y, np.ones((1, len(y))), LC_RIDGE)[0]
    out = {"lc_win_rate": float(_sigmoid(b0)), "length_coef": float(b1)}
    if weights is not None:
        weights = weights[weights.sum(1) > 0].astype(float)  # a resample without this pair says nothing
        boot = _sigmoid(fit_logistic(X, y, weights, LC_RIDGE)[:, 0])
        out["lc_ci"] = [float(v) for v in np.percentile(boot, [2.5, 97.5])]
    return out


def bradley_terry(wins: np.ndarray, ridge: float = BT_RIDGE) -> np.ndarray:
    """Bradley–Terry strengths θ with P(i beats j) = sigmoid(θi − θj), by Newton on the log-likelihood
    Σ_ij wins[i, j] · log sigmoid(θi − θj) − ridge/2 · Σ θ² (ties are half a win each way).

    wins: (S, S) or batched (B, S, S). The gradient of the likelihood sums to zero over systems, so with
    the ridge the optimum has Σθ = 0: strengths are log-odds against the average system.
    """
    wins = np.asarray(wins, dtype=float)
    batched = wins.ndim == 3
    wins = wins if batched else wins[None]
    games = wins + wins.transpose(0, 2, 1)
    theta = np.zeros(wins.shape[:2])
    eye = ridge * np.eye(wins.shape[1])
    for _ in range(200):
        p = _sigmoid(theta[:, :, None] - theta[:, None, :])
        grad = (wins - games * p).sum(-1) - ridge * theta
        w = games * p * (1 - p)
        neg_hess = np.eye(w.shape[1]) * w.sum(-1)[:, :, None] - w + eye
        step = np.linalg.solve(neg_hess, grad[..., None])[..., 0]
        theta += step
        if np.abs(step).max() < 1e-10:
            break
    return theta if batched else theta[0]


def summarize(path: Path | str, *, resamples: int = 1000, seed: int = 0) -> dict:
    """Per pair of systems: W/T/L, win rate ± SE, LC win rate, order agreement; overall: order agreement
    and Bradley–Terry strengths with 95% percentile intervals from `resamples` bootstrap draws of pair_ids
    (seeded). A resample that draws none of a system's comparisons leaves it at 0 (the ridge's pull):
    with a handful of pair_ids the intervals are only indicative."""
    comparisons = load_comparisons(path)
    systems, pairs = [], {}
    for c in comparisons:
        systems += [s for s in (c.a, c.b) if s not in systems]
        pairs.setdefault(frozenset((c.a, c.b)), (c.a, c.b))
    pair_ids = sorted({c.pair_id for c in comparisons})
    rng = np.random.default_rng(seed)
    # One draw of pair_ids serves every pair's LC interval and the Bradley–Terry intervals alike.
    counts = rng.multinomial(len(pair_ids), np.full(len(pair_ids), 1 / len(pair_ids)), size=resamples)
    pid_index = {p: i for i, p in enumerate(pair_ids)}

    rows = []
    for a, b in pairs.values():
        mine = [c for c in comparisons if {c.a, c.b} == {a, b}]
        turned = np.array([c.a != a for c in mine])
        y = np.array([c.score for c in mine])
        y = np.where(turned, 1 - y, y)
        mean, se = mean_and_se(y)
        row = {"a": a, "b": b, "n": len(mine), "wins": int((y == 1).sum()), "ties": int((y == 0.5).sum()),
               "losses": int((y == 0).sum()), "win_rate": mean, "standard_error": se,
               "order": order_agreement(mine)}
        soft = [(c.soft if c.a == a else 1 - c.soft) for c in mine if c.soft is not None]
        if soft:  # AlpacaEval 2's default: the mean of the judge's soft preferences, same SE
            row["soft_win_rate"], row["soft_standard_error"] = mean_and_se(np.array(soft))
            row["soft_n"] = len(soft)
        sized = [i for i, c in enumerate(mine) if c.len_a is not None]
        delta = np.array([(mine[i].len_a - mine[i].len_b) * (-1 if turned[i] else 1) for i in sized], dtype=float)
        weights = counts[:, [pid_index[mine[i].pair_id] for i in sized]] if resamples else None
        row["length_n"] = len(sized)
        row.update(length_controlled(y[sized], delta, weights) or {"lc_win_rate": None})
        rows.append(row)

    index = {s: i for i, s in enumerate(systems)}
    contrib = np.zeros((len(pair_ids), len(systems), len(systems)))  # each pair_id's (half-)wins
    for c in comparisons:
        p, i, j = pid_index[c.pair_id], index[c.a], index[c.b]
        contrib[p, i, j] += c.score
        contrib[p, j, i] += 1 - c.score
    theta = bradley_terry(contrib.sum(0))
    strengths = {s: {"strength": float(theta[index[s]])} for s in systems}
    if resamples:
        boot = bradley_terry(np.einsum("bp,pij->bij", counts, contrib))
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        for s, i in index.items():
            strengths[s]["ci"] = [float(lo[i]), float(hi[i])]
    return {"file": str(path), "n_comparisons": len(comparisons), "systems": systems,
            "order": order_agreement(comparisons), "pairs": rows,
            "bradley_terry": {"strengths": strengths, "resamples": resamples, "seed": seed,
                              "scale": "log-odds, sum to zero; ties count half a win"}}
