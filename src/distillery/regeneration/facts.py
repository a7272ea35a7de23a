"""Does a rewrite keep the facts of the answer it replaces? Numbers with their units, times and named
entities, read with regular expressions (no NLP model): deterministic, and fast enough to run on every reply.

    >>> tool = '{"city": "Lisbon", "temp_c": 22, "precip_pct": 40}'
    >>> check_facts("Lisbon: 22 degrees, rain chance 40%.", "Expect 22°C in Lisbon; 40 percent chance of rain.",
    ...             [tool]).ok
    True
    >>> check_facts("Lisbon: 22 degrees, rain chance 40%.", "Lovely and warm, 24°C.", [tool]).detail
    'drops 40%, Lisbon; changes 22°C to 24°C'

What must be kept:
- every number the original states, with its unit. Not only the ones a tool result backs: a number no
  tool states is still a claim (a count, "3 flights in all"; a document's figure; an off-topic answer's
  "eight legs"), and regenerate restyles, it does not edit claims. One exception: an original number no
  source backs, replaced by one of the same unit that a source does back, is a correction, not a change.
- every named entity the original states that the conversation names too (a tool result or tool-call
  argument, a user message, an earlier turn; a document's title). Capitalised words alone are no
  evidence of a name ("Right, Expect fog", "Short answer: The forecast"), so a stock phrase with no facts
  demands none, and a name the conversation never used is not required.
An invention: a number written in digits in the rewrite that appears nowhere in the original or the
conversation. Spelled numbers ("one of them") and scales ("out of 5", "4.5/5") are never inventions.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from distillery.records import final_assistant_index

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
WORDS = {w: i for i, w in enumerate(_ONES)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}

NUMBER = re.compile(rf"""
    (?P<time>(?<![\w.:])(?P<h>\d{{1,2}}):(?P<m>[0-5]\d)(?![\d:])(?:\s?(?P<ap>[ap])\.?m\b\.?)?)
  | (?P<hour>(?<![\w.:])(?P<h2>\d{{1,2}})\s?(?P<ap2>[ap])\.?m\b\.?)
  | (?P<num>(?<![\w.,])(?P<cur>US\$|\$|€|£|(?:USD|EUR|GBP)\s)?(?P<sign>[-−–](?=\d)|(?i:minus|negative)\s+)?
        (?P<digits>\d{{1,3}}(?:,\d{{3}})+(?!\d)|\d+)(?P<frac>\.\d+)?)
  | (?P<word>(?<![\w-])(?P<wsign>(?i:minus|negative)\s+)?
        (?P<w>(?i:(?P<tens>{"|".join(_TENS)})(?:[-\s](?P<unit_w>{"|".join(_ONES[1:10])}))?|{"|".join(_ONES)}))(?![\w-]))
""", re.X)

UNIT = re.compile(r"""\s?(?:
    (?P<c>[°º]\s?C\b|C\b|(?i:degrees?\s+(?:celsius|centigrade|c\b)|celsius|centigrade))
  | (?P<f>[°º]\s?F\b|F\b|(?i:degrees?\s+(?:fahrenheit|f\b)|fahrenheit))
  | (?P<below>(?:[°º]|(?i:degrees?))?\s?(?i:below\s+(?:zero|freezing)))
  | (?P<deg>[°º]|(?i:degrees?\b|deg\b))
  | (?P<pct>%|(?i:per\s?cent\b|pct\b))
  | (?P<usd>(?i:usd\b|dollars?\b|bucks\b))
  | (?P<eur>(?i:eur\b|euros?\b))
  | (?P<kmh>(?i:km/h|kph\b|kmh\b|km\s(?:per|an)\s+hour|kilomet(?:er|re)s?\s+(?:per|an)\s+hour))
  | (?P<mph>(?i:mph\b|miles\s+(?:per|an)\s+hour))
  | (?P<mm>(?i:mm\b|millimet(?:er|re)s?\b))
)""", re.X)
CURRENCY = {"$": "USD", "us$": "USD", "usd": "USD", "€": "EUR", "eur": "EUR", "£": "GBP", "gbp": "GBP"}
SCALE = re.compile(r"(?:out\s+of|/)\s?$", re.I)  # "4.5 out of 5", "4.5/5": the 5 is a scale, not a claim


@dataclass(frozen=True)
class Number:
    value: str  # canonical: "22", "-5", "4.5", "07:45" (a time, 24-hour)
    unit: str | None  # °C °F ° % USD EUR GBP km/h mph mm time, or None
    spelled: bool = field(default=False, compare=False)  # "three": helps keep a fact, never an invention
    scale: bool = field(default=False, compare=False)  # the 5 of "out of 5"

    def __str__(self) -> str:
        if self.unit in ("USD", "EUR", "GBP"):
            return {"USD": "$", "EUR": "€", "GBP": "£"}[self.unit] + self.value
        if self.unit in (None, "time"):
            return self.value
        return f"{self.value}{self.unit}" if self.unit in ("°C", "°F", "°", "%") else f"{self.value} {self.unit}"


def _canon(text: str) -> str:
    try:
        d = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return text
    return str(int(d)) if d == d.to_integral_value() else format(d.normalize(), "f")


def _unit(m: re.Match | None, degrees: str) -> tuple[str | None, bool]:
    """(the unit a UNIT match names, whether it negates: "5 below zero")."""
    if m is None:
        return None, False
    kind = m.lastgroup
    named = {"c": "°C", "f": "°F", "pct": "%", "usd": "USD", "eur": "EUR", "kmh": "km/h", "mph": "mph", "mm": "mm"}
    return named.get(kind, degrees), kind == "below"


def extract_numbers(text: str, degrees: str = "°") -> list[Number]:
    """The numbers in `text`, units normalised; `degrees` is what a bare "degrees" or "°" means (°C where
    the conversation speaks Celsius)."""
    out, consumed = [], 0
    for m in NUMBER.finditer(text):
        if m.start() < consumed:  # the "zero" of "5 below zero"
            continue
        if m["time"] or m["hour"]:
            h, minutes, ap = (int(m["h"]), int(m["m"]), m["ap"]) if m["time"] else (int(m["h2"]), 0, m["ap2"])
            if ap and h <= 12:
                h = h % 12 + (12 if ap.lower() == "p" else 0)
            if h < 24:
                out.append(Number(f"{h:02d}:{minutes:02d}", "time"))
            continue
        if m["num"]:
            value = _canon(m["digits"] + (m["frac"] or ""))
            negative = bool(m["sign"])
        else:
            value = str(WORDS[(m["tens"] or m["w"]).lower()] + (WORDS[m["unit_w"].lower()] if m["unit_w"] else 0))
            negative = bool(m["wsign"])
        suffix = UNIT.match(text, m.end())
        unit, below = _unit(suffix, degrees)
        consumed = suffix.end() if suffix else m.end()
        if m["cur"]:
            unit = CURRENCY[m["cur"].strip().lower()]
        if (negative or below) and value != "0":
            value = "-" + value
        scale = SCALE.search(text[max(0, m.start() - 8):m.start()]) is not None
        out.append(Number(value, unit, spelled=bool(m["word"]), scale=scale))
    return out


def _compatible(fact: Number, said: Number) -> bool:
    """`said` states `fact`: the same value, and the same unit where the fact has one ("°" is either scale)."""
    if fact.value != said.value:
        return False
    return fact.unit is None or fact.unit == said.unit or {fact.unit, said.unit} in ({"°", "°C"}, {"°", "°F"})


def temperature_scale(texts: list[str]) -> str:
    """What "degrees" means in this conversation: °C where it speaks Celsius (a temp_c key, "°C"), °F where
    Fahrenheit, "°" (either) where it says neither or both."""
    joined = " ".join(texts)
    keys = [k.lower() for k in re.findall(r'"(\w+)"\s*:', joined)]
    celsius = any(k.endswith(("_c", "celsius")) for k in keys) or re.search(r"[°º]C\b|celsius", joined, re.I)
    fahrenheit = any(k.endswith(("_f", "fahrenheit")) for k in keys) or re.search(r"[°º]F\b|fahrenheit", joined, re.I)
    return "°C" if celsius and not fahrenheit else "°F" if fahrenheit and not celsius else "°"


def _leaves(data) -> list:
    """A JSON value's numbers and strings, and each list's length ("3 flights in all" is grounded)."""
    if isinstance(data, dict):
        return [x for v in data.values() for x in _leaves(v)]
    if isinstance(data, list):
        return [len(data)] + [x for v in data for x in _leaves(v)]
    return [] if isinstance(data, bool) or data is None else [data]


def _parsed(text: str):
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def grounded_values(texts: list[str], degrees: str = "°") -> set[str]:
    """Every numeric value the conversation states (JSON tool results read as JSON)."""
    values: set[str] = set()
    for text in texts:
        data = _parsed(text)
        if not isinstance(data, (dict, list)):
            values |= {n.value for n in extract_numbers(text, degrees)}
            continue
        for leaf in _leaves(data):
            if isinstance(leaf, str):
                values |= {n.value for n in extract_numbers(leaf, degrees)}
            else:
                values.add(_canon(repr(leaf)))
    return values


WORD = re.compile(r"[^\W\d_][\w'’&-]*")
NOT_NAMES = {"I", "I'm", "I'll", "I've", "I'd", "OK", "The", "A", "An"}
ARTICLE = re.compile(r"^(?:The|A|An) ")


def _names(text: str, prose: bool) -> set[str]:
    """Runs of capitalised words ("Old Town Suites"). In prose the first word of a sentence is no
    evidence of a name, so it never starts a run."""
    runs, run, last_end = [], [], 0
    for m in WORD.finditer(text):
        before = text[:m.start()].rstrip()
        initial = prose and (not before or before[-1] in ".!?:;")
        if run and (not m[0][0].isupper() or initial or text[last_end:m.start()] != " "):
            runs.append(" ".join(run))
            run = []
        if m[0][0].isupper() and not initial:
            run.append(m[0])
        last_end = m.end()
    names = {ARTICLE.sub("", r) for r in runs + ([" ".join(run)] if run else [])}
    return {n for n in names if len(n) > 1 and n not in NOT_NAMES}


def named_entities(texts: list[str]) -> set[str]:
    """The names a conversation uses: capitalised runs in JSON string values (a hotel, an airline,
    "Monday" of "on Monday") and in the prose of its messages."""
    names: set[str] = set()
    for text in texts:
        data = _parsed(text)
        if isinstance(data, (dict, list)):
            names |= {n for leaf in _leaves(data) if isinstance(leaf, str)
                      for n in _names(leaf, prose=len(leaf.split()) > 4)}
        else:
            names |= _names(text, prose=True)
    return names


def _mentions(text: str, name: str, ignore_case: bool) -> bool:
    pattern = r"(?<!\w)" + r"\s+".join(map(re.escape, name.split())) + r"(?!\w)"
    return re.search(pattern, text, re.I if ignore_case else 0) is not None


@dataclass
class FactCheck:
    """What a rewrite did with the facts of the original."""
    required: list[str]  # the facts of the original it must keep, as shown ("22°C", "$120", "Lisbon")
    dropped: list[str] = field(default_factory=list)
    changed: list[tuple[str, str]] = field(default_factory=list)  # (the original's fact, what the rewrite says)
    invented: list[str] = field(default_factory=list)  # numbers the conversation never states
    corrected: list[tuple[str, str]] = field(default_factory=list)  # an unbacked number → a backed one

    @property
    def kept(self) -> bool:
        return not self.dropped and not self.changed

    @property
    def ok(self) -> bool:
        return self.kept and not self.invented

    @property
    def reason(self) -> str | None:
        return None if self.ok else "facts_dropped" if not self.kept else "invention"

    @property
    def detail(self) -> str:
        parts = [f"drops {', '.join(self.dropped)}"] if self.dropped else []
        parts += [f"changes {', '.join(f'{a} to {b}' for a, b in self.changed)}"] if self.changed else []
        parts += [f"invents {', '.join(self.invented)}"] if self.invented else []
        return "; ".join(parts)


def check_facts(original: str, rewrite: str, context_texts: list[str]) -> FactCheck:
    """The facts of `original` the rewrite drops or changes, and the numbers it invents; `context_texts`
    are the conversation before the answer (tool results, tool-call arguments, user messages)."""
    degrees = temperature_scale([*context_texts, original])
    facts = list(dict.fromkeys(n for n in extract_numbers(original, degrees) if not (n.spelled and n.value == "1")))
    said = extract_numbers(rewrite, degrees)
    backed = grounded_values(context_texts, degrees)
    original_values = {n.value for n in extract_numbers(original, degrees)}
    names = sorted(n for n in named_entities(context_texts) if _mentions(original, n, ignore_case=False))
    names = [n for n in names if not any(n != m and _mentions(m, n, False) for m in names)]  # "York" of "New York"
    check = FactCheck(required=[str(n) for n in facts] + names)

    for fact in facts:
        if any(_compatible(fact, s) for s in said):
            continue
        # The same kind of figure with another value: a change (or a correction, when only the new one is backed).
        other = next((s for s in said if s.unit == fact.unit and s.value not in original_values
                      and not (s.spelled and s.value == "1")), None)  # "the one", not a changed count
        if other is None:
            check.dropped.append(str(fact))
        elif fact.value not in backed and other.value in backed:
            check.corrected.append((str(fact), str(other)))
        else:
            check.changed.append((str(fact), str(other)))
    check.dropped += [n for n in names if not _mentions(rewrite, n, ignore_case=True)]
    changed_to = {b for _, b in check.changed}
    check.invented = list(dict.fromkeys(
        str(s) for s in said if not s.spelled and not s.scale and s.value not in backed | original_values
        and str(s) not in changed_to))
    return check


def fact_sources(record: dict) -> tuple[str, list[str]]:
    """(the answer a rewrite replaces, what grounds it): a conversation's final assistant message and the
    messages before it (user, tool results, tool-call arguments, earlier answers; not the system prompt);
    a document's text and its title."""
    if "messages" not in record:
        return record.get("text", ""), [record["title"]] if record.get("title") else []
    messages = record["messages"]
    end = final_assistant_index(messages)
    context = []
    for m in messages[:end]:
        if m.get("role") == "system":
            continue
        if isinstance(m.get("content"), str) and m["content"].strip():
            context.append(m["content"])
        context += [c.get("function", {}).get("arguments") or "" for c in m.get("tool_calls") or []]
    return (messages[end]["content"] if end is not None else ""), context
