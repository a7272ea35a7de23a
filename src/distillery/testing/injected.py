"""Synthetic responses with templates injected at known rates and positions, to measure detection.

make_responses: varied filler from random sentences over a pseudo-word vocabulary (no phrase recurs by
chance); four kinds of template are injected: two verbatim stock sentences (start and end), a frame with a
slot (a city, an adjective) mid-answer, and a family of three light paraphrases. `truth[i]` names what was
injected into response i (or None), so precision and recall can be computed exactly.

make_answers: the harder test. English-looking answers of 80-400 words with their requests and tool results;
paraphrase families whose every occurrence is lightly edited; and sentences the task makes alike, which
must not be flagged. stream_responses: make_responses' distribution as a fast stream, for benchmarks.
"""
from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass

CITIES = ["Paris", "Lisbon", "Tokyo", "Denver", "Nairobi", "Oslo", "Lima", "Hanoi", "Toronto", "Cairo",
          "Seattle", "Rome", "Sydney", "Prague", "Austin", "Dublin", "Seoul", "Quito", "Accra", "Perth"]
ADJECTIVES = ["bright", "gloomy", "unsettled", "mild", "stormy", "crisp", "humid", "breezy"]
TEMPLATES = {
    "opener": ("start", 0.15, ["Here's the information you requested."]),
    "closer": ("end", 0.10, ["Let me know if there is anything else I can do for you."]),
    "frame": ("middle", 0.08, ["The forecast for {city} looks {adj} for the rest of this week."]),
    "paraphrase": ("end", 0.09, ["I hope this information proves useful to you today.",
                                 "I hope this information proves helpful to you today.",
                                 "I hope that this information proves useful to you today."]),
}
TOPICS = ["weather", "flights", "hotels"]


def vocabulary(rng: random.Random, n: int = 3000) -> list[str]:
    syllables = ["ka", "lo", "mi", "su", "te", "ra", "vo", "ne", "pi", "da", "gu", "fe", "zo", "bri", "tal", "mon"]
    vocab = set()
    while len(vocab) < n:
        vocab.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))))
    return sorted(vocab)


def sentence(rng: random.Random, vocab: list[str]) -> str:
    return " ".join(rng.choice(vocab) for _ in range(rng.randint(7, 14))).capitalize() + "."


def make_responses(n: int, seed: int = 0, sentences: tuple[int, int] = (2, 4)):
    """(texts, topics, truth) for n responses."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    texts, topics, truth = [], [], []
    for _ in range(n):
        body = [sentence(rng, vocab) for _ in range(rng.randint(*sentences))]
        r, kind = rng.random(), None
        for name, (_, rate, _) in TEMPLATES.items():
            if r < rate:
                kind = name
                break
            r -= rate
        if kind:
            where, _, variants = TEMPLATES[kind]
            text = rng.choice(variants).format(city=rng.choice(CITIES), adj=rng.choice(ADJECTIVES))
            if where == "start":
                body.insert(0, text)
            elif where == "end":
                body.append(text)
            else:
                body.insert(len(body) // 2, text)
        texts.append(" ".join(body))
        topics.append(rng.choice(TOPICS))
        truth.append(kind)
    return texts, topics, truth


# --- The harder test: real-looking varied answers, paraphrase families that never repeat a wording ---------
# The filler above is pseudo-words, so nothing in it resembles anything else. Real answers are English: they
# share function words, openers and topic nouns, and the task itself makes some sentences alike (a tool result
# restated, a formula, a greeting the user asked for). make_answers builds such a corpus from a phrase grammar.

FAMILIES = {  # each family: 2-4 base wordings of one stock sentence; every occurrence gets a light edit
    "hope": ["I hope this information helps you make the best decision for your needs.",
             "I hope this info really helps you to make the right choice for your needs.",
             "I hope this information helps you make the right decision for your situation.",
             "Hopefully this information helps you make the best choice for your needs."],
    "reach": ["If you have any other questions, feel free to reach out and I will be happy to help.",
              "Feel free to reach out if you have more questions, and I would be glad to help.",
              "If any other questions come up, do not hesitate to reach out and I will gladly help."],
    "change": ["Keep in mind that conditions can change quickly, so it is always worth checking again closer to "
               "the time.",
               "Remember that things can change quickly, so it is worth checking again closer to the date."],
}
SYNONYMS = {"information": ["info", "details", "overview"], "helps": ["assists", "supports"], "make": ["reach"],
            "best": ["right", "ideal", "smartest"], "right": ["best", "correct"], "decision": ["choice", "call"],
            "choice": ["decision", "pick"], "needs": ["goals", "plans", "requirements"], "happy": ["glad", "pleased"],
            "glad": ["happy", "pleased"], "questions": ["queries", "concerns"], "other": ["further", "more"],
            "more": ["further", "other"], "quickly": ["fast", "suddenly", "rapidly"], "worth": ["wise", "smart"],
            "checking": ["looking", "confirming"], "time": ["day", "date"], "date": ["day", "time"],
            "conditions": ["things", "details", "plans"], "things": ["conditions", "details"],
            "remember": ["note"], "situation": ["circumstances", "case"], "help": ["assist"]}
INSERTS = ["really", "truly", "just", "also", "certainly", "definitely", "simply", "always", "genuinely", "still"]
EXACT = {"opener": ("start", "Here is a quick overview of what you need to know before you decide."),
         "closer": ("end", "Let me know if there is anything else I can help you with today.")}
SLOTTED = {"slot_city": ("start", "Based on what you shared, {city} looks like a {adj} choice for this kind of plan."),
           "slot_minutes": ("middle", "I would set aside about {n} minutes for this step, just to be on the safe "
                                      "side.")}
SLOT_ADJ = ["great", "solid", "sensible", "practical", "smart", "reasonable"]
ANSWER_TOPICS = ["weather", "flights", "hotels", "cooking", "coding", "finance", "health", "writing"]
NOUNS = {
    "weather": "forecast front breeze humidity pressure shower drizzle frost storm thunder hail coastline valley "
               "umbrella jacket radar map dew point heat wave cold snap wind chill morning fog cloud cover",
    "flights": "layover boarding pass gate fare carry-on runway connection seat aisle lounge terminal upgrade "
               "itinerary crew delay refund voucher passport visa route security line checked bag red-eye",
    "hotels": "room lobby check-in checkout reservation suite minibar key card concierge balcony deposit rate "
              "front desk pool gym shuttle neighborhood rooftop review mattress courtyard hallway city tax",
    "cooking": "recipe oven skillet dough sauce marinade broth batter crust garnish pantry whisk onion garlic "
               "olive oil lemon zest flour butter thermometer casserole salad dressing stock pot baking sheet",
    "coding": "function variable loop module compiler branch commit library dependency cache query database "
              "endpoint script interface parser thread timeout build linter container schema test suite log file",
    "finance": "budget loan fee payment invoice balance pension mortgage portfolio dividend expense receipt "
               "paycheck withdrawal bond broker statement overdraft salary subscription bill credit card index fund",
    "health": "workout stretch meal posture walk routine vitamin checkup symptom appointment diet snack muscle "
              "joint habit headache prescription injury recovery warm-up rest day heart rate sleep schedule",
    "writing": "paragraph draft tone closing line opening message card note verse rhyme story character title "
               "audience email signature phrase metaphor subject line first line punchline",
}
ADJECTIVES = ("reliable simple quick careful detailed common recent extra useful cheap expensive local public main "
              "small large early late busy quiet modern older fresh steady sudden gradual typical rare obvious hidden "
              "basic flexible strict standard optional separate shared daily weekly seasonal minor major rough precise "
              "short long narrow broad safe risky clear vague healthy heavy light warm cool dry noisy calm crowded "
              "remote nearby official informal familiar unusual").split()
VERBS = ("affects changes reduces improves requires includes covers supports limits replaces matches follows "
         "protects shapes tracks measures lowers raises delays adds removes explains shows hides balances extends "
         "shortens blocks allows handles combines separates triggers prevents encourages simplifies complicates "
         "reflects predicts saves costs uses needs keeps breaks fixes checks drives feeds warms cools clears "
         "fills").split() + ["depends on", "relies on", "points to", "leads to", "comes with", "works with"]
BASE_VERBS = ["compare", "check", "book", "avoid", "try", "skip", "choose", "plan", "ask for", "look at", "keep",
              "bring", "set aside", "write down", "test", "measure", "review", "adjust", "split", "combine", "replace",
              "pack", "order", "cancel", "confirm", "track", "save", "reuse", "switch to", "start with", "ignore",
              "watch", "note", "rinse", "stir", "heat", "store", "label", "update", "finish"]
OPENERS = ["In most cases", "For a short trip", "On busy days", "As a rule", "Later in the week",
           "At this time of year", "In my experience", "For most people", "By comparison", "On the other hand",
           "Before you commit", "After a long day", "In practice", "Ideally", "Usually", "Sometimes", "Either way",
           "Even so", "By midweek", "For what it is worth", "Honestly", "To be safe", "If time allows",
           "Over a few weeks", "Once that is done", "At first", "In the long run", "For now", "With a bit of luck",
           "Where possible", "Before noon", "On weekends", "In winter", "After the first try",
           "With a tight budget", "Most days", "In a pinch", "Looking ahead", "On a good day", "For beginners",
           "At the start", "By the evening", "In town", "Back home", "On the way", "As expected", "To my surprise",
           "From time to time", "In smaller places", "With enough notice", "Without a plan", "By tradition",
           "At the end", "Right away", "In short", "Given the season", "On reflection", "As a bonus",
           "For families", "In bigger cities"]
SUBJECTS = ["you", "we", "most people", "many travelers", "I", "some readers", "a beginner", "the team", "locals",
            "your family", "experts", "one option"]
PREPS = ["in", "on", "for", "with", "near", "after", "before", "during", "around", "through", "under", "over", "at",
         "by", "without", "from", "into", "across", "behind", "beyond"]
DETS = ["the", "a", "your", "this", "that", "each", "every", "one", "another", "any", "their", "our"]
MODALS = ["can", "could", "should", "will", "may", "might", "would", "must"]
DEGREES = ["usually", "often", "rarely", "sometimes", "always", "generally", "surprisingly", "fairly"]
CONNECTIVES = ["and", "but", "while", "so", "because", "although", "since", "whereas"]
CONDITIONS_WX = ["light rain", "clear skies", "heavy cloud", "patchy fog", "scattered showers", "bright sunshine"]
RELATIONS = ["sister", "brother", "friend", "colleague", "neighbor", "grandmother", "cousin", "teacher", "boss"]
GREETINGS = ["Wishing you a very happy birthday filled with joy, laughter and all the things you love!",
             "Happy birthday, and may the year ahead bring you health, happiness and plenty of reasons to smile."]
PLACES = ["Paris", "Lisbon", "Tokyo", "Denver", "Nairobi", "Oslo", "Lima", "Hanoi", "Toronto", "Cairo", "Seattle",
          "Rome"]


class AnswerGrammar:
    """Random English-like sentences: a handful of structures over large word pools, so two sentences
    share function words and sometimes a noun, but almost never a phrase."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.nouns = {t: _phrases(s) for t, s in NOUNS.items()}

    def _np(self, topic: str, adj: float = 0.5) -> str:
        rng = self.rng
        noun = rng.choice(self.nouns[topic] if rng.random() < 0.7 else self.nouns[rng.choice(ANSWER_TOPICS)])
        if rng.random() < adj:
            noun = f"{rng.choice(ADJECTIVES)} {noun}"
        det = rng.choice(DETS)
        return f"{'an' if det == 'a' and noun[0] in 'aeiou' else det} {noun}"

    def _pp(self, topic: str) -> str:
        return f"{self.rng.choice(PREPS)} {self._np(topic, 0.3)}"

    def sentence(self, topic: str) -> str:
        rng, np_, pp = self.rng, lambda a=0.5: self._np(topic, a), lambda: self._pp(topic)
        opener = lambda: f"{rng.choice(OPENERS)}, " if rng.random() < 0.5 else ""  # noqa: E731
        shape = rng.randrange(7)
        if shape == 0:
            s = f"{np_()} {rng.choice(VERBS)} {np_()} {pp()}"
        elif shape == 1:
            s = f"{opener()}{np_()} {rng.choice(VERBS)} {np_(0.8)}"
        elif shape == 2:
            s = (f"if you {rng.choice(BASE_VERBS)} {np_()}, {np_(0.2)} {rng.choice(MODALS)} "
                 f"{rng.choice(BASE_VERBS)} {np_()}")
        elif shape == 3:
            s = (f"you {rng.choice(MODALS)} {rng.choice(BASE_VERBS)} {np_()} {pp()}, {rng.choice(CONNECTIVES)} "
                 f"{np_(0.3)} {rng.choice(VERBS)} {np_()}")
        elif shape == 4:
            s = f"it is {rng.choice(DEGREES)} {rng.choice(ADJECTIVES)} to {rng.choice(BASE_VERBS)} {np_(0.3)} {pp()}"
        elif shape == 5:
            s = (f"{opener()}{rng.choice(SUBJECTS)} {rng.choice(MODALS)} {rng.choice(BASE_VERBS)} {np_()} and "
                 f"{rng.choice(BASE_VERBS)} {np_(0.3)}")
        else:
            s = (f"{np_()} {rng.choice(VERBS)} {np_()} {rng.choice(CONNECTIVES)} {np_(0.3)} "
                 f"{rng.choice(VERBS)} {rng.choice(['about', 'almost', 'nearly', 'roughly'])} "
                 f"{rng.randint(2, 90)} {rng.choice(['percent', 'minutes', 'days', 'times', 'dollars'])}")
        return s[0].upper() + s[1:] + rng.choice(".....!")

    def answer(self, topic: str, lo: int, hi: int) -> list[str]:
        target, out, n = self.rng.randint(lo, hi), [], 0
        while n < target:
            out.append(self.sentence(topic))
            n += len(out[-1].split())
        return out


def _phrases(s: str) -> list[str]:
    """Space-separated nouns, where 'two words' the grammar keeps together are listed in NOUNS as pairs."""
    pairs = {"radar map", "dew point", "heat wave", "cold snap", "wind chill", "morning fog", "cloud cover",
             "boarding pass", "security line", "checked bag", "key card", "front desk", "city tax", "olive oil",
             "lemon zest", "salad dressing", "stock pot", "baking sheet", "test suite", "log file", "credit card",
             "index fund", "rest day", "heart rate", "sleep schedule", "closing line", "subject line", "first line"}
    w, out, i = s.split(), [], 0
    while i < len(w):
        if i + 1 < len(w) and f"{w[i]} {w[i + 1]}" in pairs:
            out.append(f"{w[i]} {w[i + 1]}")
            i += 2
        else:
            out.append(w[i])
            i += 1
    return out


def light_edit(rng: random.Random, sentence: str) -> str:
    """One light edit: a word inserted, a synonym swapped, or the two clauses around a comma swapped."""
    body, end = sentence[:-1], sentence[-1]
    kind = rng.choice(["insert", "synonym", "reorder"])
    if kind == "reorder" and ", " in body:
        a, b = body.split(", ", 1)
        b = b[0].upper() + b[1:]
        return f"{b}, {a[0].lower() + a[1:] if not a.startswith('I ') else a}{end}"
    w = body.split()
    swappable = [i for i, x in enumerate(w) if x.lower().strip(",") in SYNONYMS]
    if kind == "synonym" and swappable:
        i = rng.choice(swappable)
        word = w[i].strip(",")
        new = rng.choice(SYNONYMS[word.lower()])
        w[i] = w[i].replace(word, new[0].upper() + new[1:] if word[0].isupper() else new)
    else:
        w.insert(rng.randint(1, len(w) - 1), rng.choice(INSERTS))
    return " ".join(w) + end


@dataclass
class Answers:
    texts: list[str]
    contexts: list[str]
    topics: list[str]
    truth: list[set]  # per answer: the injected kinds ("opener", "slot_city", "family:hope", ...)
    injected: list[dict]  # per answer: kind -> the sentence injected for it
    negatives: list[set]  # per answer: the task-alike sentences put in ("restated", "formula", "greeting")


def _context(rng: random.Random, topic: str) -> tuple[str, dict]:
    """(context text, tool values) for one answer: the user's request and, for tool topics, a tool result."""
    place = rng.choice(PLACES)
    if topic == "weather":
        v = {"city": place, "temperature": rng.randint(-5, 34), "conditions": rng.choice(CONDITIONS_WX),
             "wind_kph": rng.randint(3, 50)}
        return (f"[user] What is the weather like in {place} this week?\n[tool call] get_weather({{\"city\": "
                f"\"{place}\"}})\n[tool result] {json.dumps(v)}"), v
    if topic == "hotels":
        v = {"name": f"Hotel {rng.choice(['Lumen', 'Aria', 'Harbor', 'Linden', 'Verde', 'Astor'])}",
             "price_per_night": rng.randint(60, 400), "rating": round(rng.uniform(3.0, 4.9), 1), "city": place}
        return (f"[user] Find me a hotel in {place} for next weekend.\n[tool call] search_hotels({{\"city\": "
                f"\"{place}\"}})\n[tool result] {json.dumps(v)}"), v
    if topic == "finance":
        v = {"principal": rng.randrange(1000, 20000, 500), "rate": rng.choice([3, 4, 5, 6]),
             "years": rng.randint(2, 15)}
        return (f"[user] How much will {v['principal']} dollars grow to at {v['rate']}% compound interest over "
                f"{v['years']} years?"), v
    if topic == "writing" and rng.random() < 0.5:
        v = {"greeting": rng.choice(RELATIONS)}
        return f"[user] Could you write a short birthday message for my {v['greeting']}?", v
    ask = rng.choice(["Can you help me with", "I have a question about", "What should I know about",
                      "Any advice on", "How do I deal with"])
    return f"[user] {ask} my {rng.choice(_phrases(NOUNS[topic]))} in {place}?", {}


def _task_alike(rng: random.Random, topic: str, values: dict) -> tuple[str, str] | None:
    """A sentence the task makes alike across answers (not a template): (kind, sentence) or None."""
    if topic == "weather":
        return "restated", (f"Right now {values['city']} is at {values['temperature']} degrees with "
                            f"{values['conditions']} and winds around {values['wind_kph']} km/h.")
    if topic == "hotels":
        return "restated", (f"{values['name']} in {values['city']} is rated {values['rating']} and costs "
                            f"{values['price_per_night']} dollars per night.")
    if topic == "finance":
        total = values["principal"] * (1 + values["rate"] / 100) ** values["years"]
        return "formula", (f"Using A = P(1 + r)^t with P = {values['principal']}, r = {values['rate'] / 100} and "
                           f"t = {values['years']}, the balance comes to about {total:,.2f} dollars.")
    if "greeting" in values:
        return "greeting", light_edit(rng, rng.choice(GREETINGS))
    return None


def make_answers(n: int, seed: int = 0, *, family_rate: float = 0.05, exact_rate: float = 0.08,
                 slot_rate: float = 0.06, words: tuple[int, int] = (80, 400), families=None) -> Answers:
    """n answers of 80-400 words over eight topics, each with its context (request, tool call and result).

    Injected, each independently: two exact stock sentences (exact_rate each), two slot-filled frames
    (slot_rate each), and one sentence of a paraphrase family (family_rate in all, families in turn), edited
    lightly at every occurrence so that no wording occurs more than twice. Task-alike sentences (tool results
    restated, a formula with the user's numbers, a birthday greeting the user asked for) are put in as the
    task calls for them; they are not templates and must not be flagged.
    """
    rng = random.Random(seed)
    grammar = AnswerGrammar(rng)
    families = families or FAMILIES
    used: dict[str, int] = defaultdict(int)
    out = Answers([], [], [], [], [], [])
    for i in range(n):
        topic = rng.choice(ANSWER_TOPICS)
        context, values = _context(rng, topic)
        body = grammar.answer(topic, *words)
        injected, negatives = {}, set()
        alike = _task_alike(rng, topic, values)
        if alike and rng.random() < 0.85:
            negatives.add(alike[0])
            body.insert(rng.randint(0, len(body)), alike[1])
        for kind, (where, text) in EXACT.items():
            if rng.random() < exact_rate:
                injected[kind] = _place(rng, body, where, text)
        for kind, (where, text) in SLOTTED.items():
            if rng.random() < slot_rate:
                filled = text.format(city=rng.choice(PLACES), adj=rng.choice(SLOT_ADJ), n=rng.randint(5, 90))
                injected[kind] = _place(rng, body, where, filled)
        if rng.random() < family_rate:
            name = list(families)[i % len(families)]
            for _ in range(50):  # a fresh wording: none may occur more than twice
                s = rng.choice(families[name])
                s = light_edit(rng, light_edit(rng, s) if rng.random() < 0.3 else s)
                if used[s] < 2:
                    break
            used[s] += 1
            injected[f"family:{name}"] = _place(rng, body, rng.choice(["middle", "end"]), s)
        out.texts.append(" ".join(body))
        out.contexts.append(context)
        out.topics.append(topic)
        out.truth.append(set(injected))
        out.injected.append(injected)
        out.negatives.append(negatives)
    return out


def _place(rng: random.Random, body: list[str], where: str, text: str) -> str:
    at = {"start": 0, "end": len(body)}.get(where, rng.randint(1, max(1, len(body) - 1)))
    body.insert(at, text)
    return text


def stream_responses(n: int, seed: int = 0, sentences: tuple[int, int] = (2, 4), block: int = 10_000):
    """make_responses' distribution as a stream of (text, topic, kind), drawn in blocks with numpy: a million
    responses in seconds, so a benchmark times the detector and not the generator. One difference: the
    paraphrase kind drifts, as in make_answers: a base wording of FAMILIES["hope"] with a light edit each time."""
    import numpy as np

    edits = random.Random(seed)
    vocab = vocabulary(random.Random(seed))
    rng = np.random.default_rng(seed)
    kinds = list(TEMPLATES)
    edges = np.cumsum([rate for _, rate, _ in TEMPLATES.values()])
    for start in range(0, n, block):
        b = min(block, n - start)
        n_sent = rng.integers(sentences[0], sentences[1] + 1, b)
        ends = np.cumsum(rng.integers(7, 15, int(n_sent.sum()))).tolist()
        drawn = [vocab[i] for i in rng.integers(0, len(vocab), ends[-1]).tolist()]
        made = [" ".join(drawn[a:z]).capitalize() + "." for a, z in zip([0] + ends[:-1], ends)]
        cut = np.cumsum(n_sent).tolist()
        kind_of = np.searchsorted(edges, rng.random(b), side="right")
        extra = rng.integers(0, 1 << 30, (b, 3)).tolist()
        n_sent = n_sent.tolist()
        for d in range(b):
            body = made[cut[d] - n_sent[d]:cut[d]]
            kind = kinds[kind_of[d]] if kind_of[d] < len(kinds) else None
            pick = extra[d]
            if kind == "paraphrase":
                body.append(light_edit(edits, FAMILIES["hope"][pick[0] % len(FAMILIES["hope"])]))
            elif kind:
                where, _, variants = TEMPLATES[kind]
                text = variants[pick[0] % len(variants)].format(city=CITIES[pick[1] % len(CITIES)],
                                                                adj=ADJECTIVES[pick[2] % len(ADJECTIVES)])
                body.insert({"start": 0, "end": len(body)}.get(where, len(body) // 2), text)
            yield " ".join(body), TOPICS[(pick[0] >> 8) % len(TOPICS)], kind
