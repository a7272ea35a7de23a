"""The oracle's reply contract, from one definition: a pydantic model built from the filter.

The same model gives the JSON schema sent to providers that can enforce one (a forced tool call,
a JSON-schema response format) and validates every reply and every pre-existing label, so the two
cannot disagree. Every dimension is required, numeric and in range; no other key is allowed. The one
repair is pydantic's lax mode reading a number written as a string ("7", " 7.5 ") as that number;
a boolean is not a number here. Nothing is clamped, guessed or defaulted.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model


class ParseError(ValueError):
    pass


def _not_bool(value):
    if isinstance(value, bool):
        raise ValueError("a boolean is not a score")
    return value


def _models(filt) -> tuple[type[BaseModel], type[BaseModel]]:
    return _cached_models(tuple(filt.dimensions), float(filt.scale_min), float(filt.scale_max))


@lru_cache(maxsize=16)
def _cached_models(dims: tuple[str, ...], low: float, high: float):
    score = Annotated[float, Field(ge=low, le=high), BeforeValidator(_not_bool)]
    scores = create_model("Scores", __config__=ConfigDict(extra="forbid"), **{d: (score, ...) for d in dims})
    reply = create_model("OracleReply", __config__=ConfigDict(extra="forbid"), scores=(scores, ...),
                         reasoning=(str, ...))
    return scores, reply


def _plain(schema: dict, defs: dict | None = None):
    """The schema with $refs inlined and titles dropped: the plain shape every provider accepts."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _plain(defs[schema["$ref"].split("/")[-1]], defs)
        return {k: _plain(v, defs) for k, v in schema.items() if k not in ("title", "$defs")}
    if isinstance(schema, list):
        return [_plain(v, defs) for v in schema]
    return schema


def reply_schema(filt) -> dict:
    """The JSON schema of an oracle reply: {"scores": {dimension: number}, "reasoning": str}."""
    return _plain(_models(filt)[1].model_json_schema())


def describe(err: ValidationError, low: float, high: float) -> str:
    """One readable line per problem: `dimension 'style' missing`, `… = 11.0 outside 0-10`."""
    out = []
    for e in err.errors():
        name = ".".join(str(p) for p in e["loc"] if p != "scores") or "reply"
        kind = e["type"]
        if kind == "missing":
            out.append(f"dimension {name!r} missing" if len(e["loc"]) > 1 or name != "reasoning"
                       else f"{name!r} missing")
        elif kind == "extra_forbidden":
            out.append(f"unknown dimension {name!r}")
        elif kind in ("greater_than_equal", "less_than_equal"):
            out.append(f"dimension {name!r} = {e['input']} outside {low:g}-{high:g}")
        else:
            out.append(f"dimension {name!r} is not a number: {e['input']!r}")
    return "; ".join(out)


def validate_scores(scores, filt) -> dict[str, float]:
    """{dimension: score} checked against the filter; ParseError lists every problem."""
    if not isinstance(scores, dict):
        raise ParseError("'scores' is not an object")
    try:
        model = _models(filt)[0].model_validate(scores)
    except ValidationError as err:
        raise ParseError(describe(err, filt.scale_min, filt.scale_max)) from None
    return {d: float(getattr(model, d)) for d in filt.dimensions}


def parse_scores(text: str, filt) -> tuple[dict[str, float], str]:
    """(scores, reasoning) from a JSON reply; ParseError says what was wrong. The reasoning is
    optional here: a reply that scores every dimension but forgot it is still a label."""
    match = re.search(r"\{.*\}", text, flags=re.S)  # tolerate prose or code fences around the JSON
    if not match:
        raise ParseError("no JSON object in the reply")
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ParseError("the reply is not a JSON object")
    scores = data.get("scores", data)
    return validate_scores(scores, filt), str(data.get("reasoning", ""))
