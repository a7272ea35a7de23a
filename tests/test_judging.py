"""Aggregating pairwise comparisons: order agreement, win rate ± SE, LC win rate, Bradley–Terry."""
import json

import numpy as np
import pytest

from distillery.judging.__main__ import main
from distillery.judging.aggregate import bradley_terry, length_controlled, summarize
from distillery.records import RecordError


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def row(pid, a, b, ab, ba="absent", **extra):
    r = {"pair_id": pid, "a": a, "b": b, "verdict_ab": ab, **extra}
    return r if ba == "absent" else {**r, "verdict_ba": ba}


def only_pair(summary):
    (pair,) = summary["pairs"]
    return pair


def test_a_judge_that_always_prefers_the_first_shown_flips_everything_into_ties(tmp_path):
    # a shown first: "a" wins; b shown first: "b" wins. The position decides, not the answers.
    path = write(tmp_path / "c.jsonl", [row(f"p{i}", "student", "base", "a", "b") for i in range(20)])
    s = summarize(path, resamples=0)
    pair = only_pair(s)
    assert s["order"]["flip_rate"] == 1.0 and s["order"]["flipped"] == 20 and s["order"]["consistent"] == 0
    assert s["order"]["flipped_to_first"] == 20 and s["order"]["flipped_to_second"] == 0
    assert (pair["wins"], pair["ties"], pair["losses"]) == (0, 20, 0)
    assert pair["win_rate"] == 0.5


def test_a_consistent_judge_flips_nothing_and_single_order_lines_count_once(tmp_path):
    rows = ([row(f"w{i}", "student", "base", "a", "a") for i in range(6)]
            + [row(f"l{i}", "student", "base", "b", "b") for i in range(3)]
            + [row("t0", "student", "base", "tie", "tie"),
               row("h0", "student", "base", "a")])  # a human, one order: a win, no flip information
    s = summarize(write(tmp_path / "c.jsonl", rows), resamples=0)
    pair = only_pair(s)
    assert s["order"] == {"two_order": 10, "consistent": 10, "flipped": 0, "half_flipped": 0, "flip_rate": 0.0,
                          "flipped_to_first": 0, "flipped_to_second": 0}
    assert (pair["wins"], pair["ties"], pair["losses"]) == (7, 1, 3)


def test_a_winner_in_one_order_and_a_tie_in_the_other_is_a_half_flip_and_a_tie(tmp_path):
    rows = [row("p0", "student", "base", "a", "tie"), row("p1", "student", "base", "a", "a")]
    s = summarize(write(tmp_path / "c.jsonl", rows), resamples=0)
    assert s["order"]["half_flipped"] == 1 and s["order"]["flip_rate"] == 0.5
    assert (only_pair(s)["wins"], only_pair(s)["ties"]) == (1, 1)


def test_lines_with_the_systems_the_other_way_round_are_turned_around(tmp_path):
    rows = [row("p0", "student", "base", "a", "a"),
            row("p1", "base", "student", "b", "b"),  # student won again
            row("p2", "base", "student", "b", "b", pref_ab=0.1, pref_ba=0.3),  # and again: P(base better) 0.2
            row("p3", "base", "student", "a")]  # base won
    pair = only_pair(summarize(write(tmp_path / "c.jsonl", rows), resamples=0))
    assert (pair["a"], pair["b"], pair["wins"], pair["losses"]) == ("student", "base", 3, 1)
    assert pair["soft_win_rate"] == pytest.approx(0.8) and pair["soft_n"] == 1


def test_standard_error_is_alpacaevals_sem_of_the_per_example_outcomes(tmp_path):
    # Outcomes 1, 1, 0, 0.5 (orders disagree), 1: mean 0.7; squared deviations .09+.09+.49+.04+.09 = 0.8,
    # sample variance 0.8 / 4 = 0.2, SE = sqrt(0.2 / 5) = 0.2.
    rows = [row("p0", "s", "t", "a", "a"), row("p1", "s", "t", "a", "a"), row("p2", "s", "t", "b", "b"),
            row("p3", "s", "t", "a", "b"), row("p4", "s", "t", "a")]
    pair = only_pair(summarize(write(tmp_path / "c.jsonl", rows), resamples=0))
    assert pair["win_rate"] == pytest.approx(0.7)
    assert pair["standard_error"] == pytest.approx(0.2)


def simulate_length_judge(rng, n, quality_logit, length_weight):
    """Student answers ~100 units longer on average (with spread); the judge's P(student wins) is
    sigmoid(quality + length_weight · tanh(Δ/sd)). Both orders agree (no position bias)."""
    delta = rng.normal(100, 150, n)
    x = np.tanh(delta / delta.std(ddof=1))
    p = 1 / (1 + np.exp(-(quality_logit + length_weight * x)))
    wins = rng.random(n) < p
    return [row(f"p{i}", "student", "base", v, v, len_a=1000 + d, len_b=1000)
            for i, (v, d) in enumerate(zip(np.where(wins, "a", "b"), delta))]


def test_lc_win_rate_falls_back_towards_half_when_the_winner_is_only_longer(tmp_path):
    # Over 100 seeds: raw win rate ≥ 0.66, LC mean 0.501 (sd 0.027, never 0.08 from 0.5), interval covers 0.5 in 96.
    rng = np.random.default_rng(0)
    longer = only_pair(summarize(write(tmp_path / "l.jsonl", simulate_length_judge(rng, 800, 0.0, 3.0)), resamples=200))
    assert longer["win_rate"] > 0.65  # the raw win rate rewards length
    assert abs(longer["lc_win_rate"] - 0.5) < 0.08 and longer["length_coef"] > 2
    assert longer["lc_ci"][0] < 0.5 < longer["lc_ci"][1]
    # Control: a student that is better whatever its length keeps its lead after the correction.
    better = only_pair(summarize(write(tmp_path / "b.jsonl", simulate_length_judge(rng, 800, 1.2, 0.0)), resamples=0))
    assert better["lc_win_rate"] > 0.7 and abs(better["lc_win_rate"] - better["win_rate"]) < 0.05


def test_lc_needs_a_spread_of_length_differences():
    assert length_controlled(np.array([1.0, 0.0, 1.0]), np.array([50.0, 50.0, 50.0])) is None


def test_bradley_terry_recovers_known_strengths_with_intervals_that_cover_them(tmp_path):
    truth = {"strong": 1.0, "middle": 0.0, "weak": -1.0}  # sum to zero, as the fit reports them
    rng = np.random.default_rng(7)
    rows = []
    for i in range(300):
        for a, b in [("strong", "middle"), ("middle", "weak"), ("strong", "weak")]:
            a, b = (a, b) if rng.random() < 0.5 else (b, a)
            v = "a" if rng.random() < 1 / (1 + np.exp(truth[b] - truth[a])) else "b"
            rows.append(row(f"p{i}", a, b, v, v))
    bt = summarize(write(tmp_path / "c.jsonl", rows), resamples=1000, seed=0)["bradley_terry"]["strengths"]
    assert sorted(bt, key=lambda s: -bt[s]["strength"]) == ["strong", "middle", "weak"]
    for name, s in bt.items():
        lo, hi = s["ci"]
        assert lo < truth[name] < hi and hi - lo < 0.6, (name, s)
        assert abs(s["strength"] - truth[name]) < 0.2
    assert sum(s["strength"] for s in bt.values()) == pytest.approx(0, abs=1e-6)


def test_bradley_terry_counts_a_tie_as_half_a_win(tmp_path):
    # 3 half-wins to 1 is log-odds log 3.
    theta = bradley_terry(np.array([[0, 3.0], [1.0, 0]]), ridge=1e-9)
    assert theta[0] - theta[1] == pytest.approx(np.log(3), abs=1e-6)
    # From a file: one win, one tie and one flip (a tie too): 2 to 1 in half-wins, log-odds log 2.
    rows = [row("p0", "s", "t", "a", "a"), row("p1", "s", "t", "tie", "tie"), row("p2", "s", "t", "a", "b")]
    bt = summarize(write(tmp_path / "c.jsonl", rows), resamples=0)["bradley_terry"]["strengths"]
    assert bt["s"]["strength"] - bt["t"]["strength"] == pytest.approx(np.log(2), abs=0.01)


@pytest.mark.parametrize("line, problem", [
    ('{"pair_id": "p1", "a": "s", "b": "t", "verdict_ab": "A"}',
     "field 'verdict_ab' must be one of 'a', 'b', 'tie', got 'A'"),
    ('{"pair_id": "p1", "a": "s", "b": "t"}', "missing required field 'verdict_ab'"),
    ('{"a": "s", "b": "t", "verdict_ab": "a"}', "missing required field 'pair_id'"),
    ('{"pair_id": "p1", "a": "s", "b": "s", "verdict_ab": "a"}', "a system compared with itself ('s')"),
    ('{"pair_id": "p1", "a": "s", "b": "t", "verdict_ab": "a", "len_a": 3}', "give both len_a and len_b"),
    ('{"pair_id": "p1", "a": "s", "b": "t", "verdict_ab": "a", "pref_ab": 1.5}',
     "field 'pref_ab' must be a number in [0, 1], got 1.5"),
    ('{"pair_id": "p1", "a": "s", "b": "t", "verdict_ab": "a", "pref_ba": 0.5}', "pref_ba without verdict_ba"),
    ('{"pair_id": "p0", "a": "t", "b": "s", "verdict_ab": "a"}', "t vs s on 'p0' again (first on line 1)"),
    ('{"pair_id": "p1", "a": "s", "b": "t", "verdict_ab": "a",', "not valid JSON"),
    ('["p1", "s", "t"]', "expected a JSON object, got list"),
])
def test_a_bad_line_names_its_file_and_line(tmp_path, line, problem):
    path = tmp_path / "c.jsonl"
    path.write_text('{"pair_id": "p0", "a": "s", "b": "t", "verdict_ab": "a"}\n\n' + line + "\n")
    with pytest.raises(RecordError) as err:
        summarize(path, resamples=0)
    assert str(err.value).startswith(f"{path}:3: ") and problem in str(err.value)


def test_the_cli_prints_the_table_and_the_json(tmp_path, capsys):
    rows = [row(f"p{i}", "student", "base", v, v, len_a=200 + 10 * i, len_b=250)
            for i, v in enumerate("aababaaaba")]
    rows += [row(f"p{i}", "reference", "student", "a", "b") for i in range(4)]
    path = write(tmp_path / "c.jsonl", rows)
    main(["summarize", str(path), "--resamples", "50"])
    table = capsys.readouterr().out
    assert "student vs base" in table and "reference vs student" in table and "Bradley–Terry" in table
    assert "orders disagree on 28.6% of 14 two-order comparisons" in table
    main(["summarize", str(path), "--json", "--resamples", "50"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["pairs"][1]["order"]["flip_rate"] == 1.0
    assert set(summary["bradley_terry"]["strengths"]) == {"student", "base", "reference"}
    (tmp_path / "bad.jsonl").write_text('{"pair_id": "p0", "a": "s", "b": "t", "verdict_ab": "x"}\n')
    with pytest.raises(SystemExit, match=r"bad.jsonl:1: field 'verdict_ab'"):
        main(["summarize", str(tmp_path / "bad.jsonl")])
