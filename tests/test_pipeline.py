"""End to end: real `dvc repro` of the whole pipeline in a temp copy, on a tiny corpus, fake provider."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from distillery.evaluation.chat import chat_verdict
from distillery.evaluation.regression import deploy_verdict
from distillery.params import load_params
from distillery.records import load_records, subject_text, write_records
from distillery.testing.demo_corpus import build
from tests.conftest import ROOT, merge

STAGES = ["generate", "calibrate", "validate", "detect_templates", "regenerate", "label", "split", "train", "evaluate",
          "train_chat", "evaluate_chat"]
TINY = {
    "base": {"oracle": {"provider": "fake", "model": "fake"}, "generator": {"provider": "fake", "model": "fake",
                                                                            "temperature": 0.9}},
    "calibrate": {"n_positive": 4, "n_negative": 4, "n_edge": 2},
    "validate": {"n_positive": 4, "n_negative": 4, "n_edge": 2},
    "detect_templates": {"min_count": 5, "max_templates": 3},
    # The fake generator rewrites in random words, dropping every fact: the check would keep every original.
    "regenerate": {"check_facts": False},
    "train": {"epochs": 1, "max_length": 64, "batch_size": 16},
    "train_chat": {"max_examples": 8, "max_length": 96, "batch_size": 4},
    "evaluate_chat": {"max_examples": 3, "max_new_tokens": 8, "bootstrap": 100},
}


def run(cmd, cwd, check=True, env=None):
    env = {**os.environ, "PYTHONPATH": str(cwd / "src"), "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}", **(env or {})}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and out.returncode:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def ran(output: str) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in output]


def copy_project(root):
    """The pipeline's code, prompts, DVC config and generate's tool world in `root`, without a corpus or state."""
    (root / "data/raw").mkdir(parents=True)
    for name in ("data/raw/tools.json", "data/raw/world.sql"):
        shutil.copy(ROOT / name, root / name)
    for name in ("stages", "src", "prompts", ".dvc", "dvc.yaml", ".dvcignore", ".gitignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
        else:
            shutil.copy(src, root / name)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("project"))
    records, style = build(120, seed=1)
    write_records(root / "data/raw/corpus.jsonl", records)
    write_records(root / "data/raw/style.jsonl", style)
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        run(cmd, root)
    first = run(["dvc", "repro"], root)
    return root, first.stdout


def metrics(root, stage):
    return json.loads((root / "metrics" / f"{stage}.json").read_text())


def details(root, stage):
    """Every figure of a stage (its metrics file has the headline ones)."""
    return json.loads((root / "reports" / "details" / f"{stage}.json").read_text())


def test_repro_runs_all_eight_stages_and_writes_metrics_and_reports(project):
    root, output = project
    assert ran(output) == STAGES
    for name in ("generate", "calibrate", "validate", "templates", "regenerate", "label", "split", "train", "evaluate"):
        assert (root / "metrics" / f"{name}.json").exists(), name
    for report in ("calibration", "validation", "templates", "regenerate", "evaluation"):
        assert (root / "reports" / f"{report}.md").read_text().startswith("# ")
    assert "- before: " in (root / "reports/regenerate.md").read_text()  # before/after pairs to read
    generated = metrics(root, "generate")["accepted"]
    assert generated > 0 and metrics(root, "label")["labeled"] + metrics(root, "label")["failures"] == 120 + generated
    # The verdict is the one the thresholds in params give for the figures written beside it.
    ev = details(root, "evaluate")
    thresholds = load_params(root / "params.yaml").evaluate.thresholds
    assert (ev["verdict"], ev["reasons"]) == deploy_verdict(ev["test"], ev["val"], thresholds, ev["baseline_test_mae"])
    # No answer text sits in two splits: checked here on the files, not by the metric the split computes.
    texts = {s: {" ".join(subject_text(r).lower().split()) for r in load_records(root / "data/splits" / f"{s}.jsonl")}
             for s in ("train", "val", "test")}
    assert not (texts["train"] & texts["val"]) and not (texts["train"] & texts["test"]) and not (texts["val"] & texts["test"])
    assert metrics(root, "templates")["flagged"] > 0
    assert metrics(root, "regenerate")["template_rate_after"] < metrics(root, "regenerate")["template_rate_before"]
    assert metrics(root, "regenerate")["facts_kept_rate"] < 0.5  # off, yet measured: random words keep no facts
    # The stock phrases detect_templates lists are followed through regenerate, and rewritten answers lose them.
    stock = details(root, "regenerate")["overrepresented_before_after"]
    assert sorted(r["ngram"] for r in details(root, "templates")["overrepresented"]) == sorted(stock) and stock
    assert sum(c["after"] for c in stock.values()) < sum(c["before"] for c in stock.values())
    assert (root / "reports/figures/overrepresented.svg").read_text().startswith("<svg")
    # The chat student: an adapter evaluate_chat loaded, judged in both orders, its verdict from the thresholds.
    assert (root / "models/chat/adapter_model.safetensors").exists()
    tc, ec = details(root, "train_chat"), details(root, "evaluate_chat")
    assert tc["train_size"] == 8 and tc["tokens_per_second"] > 0 and tc["peak_rss_gb"] > 0
    chat_thresholds = load_params(root / "params.yaml").evaluate_chat.thresholds
    assert (ec["verdict"], ec["reasons"]) == chat_verdict(ec["student_vs_base"], ec["flip_rate"], ec["style"]["student"],
                                                          (ec["tool_calls"] or {}).get("student"), chat_thresholds)
    comparisons = load_records_any(root / "data/chat_eval/comparisons.jsonl")
    assert len(comparisons) == 3 * 3 and all("verdict_ba" in c for c in comparisons)
    assert ec["judgements"] == 3 * 3 * 2 and ec["judge_failures"] == 0
    assert set(ec["traits"]) == {"student", "base", "reference"}
    assert "## Side by side" in (root / "reports/chat_evaluation.md").read_text()


def load_records_any(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_second_repro_is_a_no_op(project):
    root, _ = project
    assert ran(run(["dvc", "repro"], root).stdout) == []


def test_forced_relabel_makes_no_model_calls(project):
    root, _ = project
    run(["dvc", "repro", "-f", "label"], root)
    m = details(root, "label")
    assert m["calls"] == 0 and m["cache_hits"] + m["journal_hits"] == m["newly_labeled"] > 0


def test_changing_split_seed_reruns_only_split_train_evaluate_and_metrics_diff_shows_it(project):
    root, _ = project
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first run"], root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["split"]["seed"] = 7
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(run(["dvc", "repro"], root).stdout) == ["split", "train", "evaluate", "train_chat", "evaluate_chat"]
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], root).stdout)
    assert "metrics/evaluate.json" in diff and "metrics/label.json" not in diff
    assert "seed" not in json.loads((root / "metrics/split.json").read_text())  # a param, not a metric:
    params = json.loads(run(["dvc", "params", "diff", "--json"], root).stdout)["params.yaml"]
    assert params["split.seed"] == {"old": None, "new": 7} or params["split.seed"]["new"] == 7


def test_metrics_show_lists_every_stage_and_plots_render(project):
    root, _ = project
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], root).stdout)
    files = next(iter(shown.values()))["data"]
    assert {f"metrics/{n}.json" for n in ("calibrate", "validate", "templates", "regenerate", "label", "split",
                                          "train", "evaluate")} <= set(files)
    for stage, figures in files.items():  # headline figures only; the long tail is in reports/details/
        assert "by_provider" not in figures["data"] and len(json.dumps(figures["data"])) < 600, stage
    assert "by_provider" in json.loads((root / "reports/details/label.json").read_text())
    run(["dvc", "plots", "show", "-o", "plots_html"], root)
    html = (root / "plots_html" / "index.html").read_text()
    for field in ('"rmse": ', '"baseline_mae": ', '"predicted_score": ', '"_lo"'):  # drawn with their data; y = x
        assert field in html, field


def test_plots_render_offline_and_the_report_embeds_them(project):
    root, _ = project
    run(["python", "-m", "distillery.plots", "--out", "offline/plots.html"], root)
    page = (root / "offline/plots.html").read_text()
    assert page.count("<svg") == 5 and "cdn" not in page.lower()  # five plots, drawn, nothing to fetch
    report = (root / "reports/evaluation.md").read_text()
    for figure in ("figures/training.svg", "figures/test_predictions.svg"):
        assert f"]({figure})" in report and (root / "reports" / figure).read_text().startswith("<svg")


def test_the_trained_student_scores_new_data_by_dimension_name(project):
    root, _ = project
    dims = list(yaml.safe_load((root / "params.yaml").read_text())["filter"]["dimensions"])
    config = json.loads((root / "models/student/config.json").read_text())
    assert list(config["id2label"].values()) == dims
    new = [{"id": "n1", "text": "Sunny and 22°C in Paris: leave the umbrella at home."}]
    write_records(root / "new.jsonl", new)
    run(["python", "-m", "distillery", "predict", "--input", "new.jsonl", "--output", "scored.jsonl"], root)
    scored = load_records(root / "scored.jsonl")
    assert scored[0]["text"] == new[0]["text"] and list(scored[0]["predicted"]["labels"]) == dims
    assert scored[0]["predicted"]["tier"] in yaml.safe_load((root / "params.yaml").read_text())["filter"]["tiers"]


def test_a_forced_rerun_from_scratch_writes_byte_identical_outputs(project):
    """Determinism: every stage again, with the call cache and journals gone, gives the same bytes
    (dvc.lock records each out's md5). Metrics agree too, but for the call accounting (calls, cache and
    journal hits), which says how this run got its answers."""
    root, _ = project
    run(["dvc", "repro"], root)  # whatever the tests above changed, settle it first
    before = (root / "dvc.lock").read_text()
    figures = {p.name: without_accounting(json.loads(p.read_text())) for p in (root / "reports/details").glob("*.json")}
    shutil.rmtree(root / ".distillery", ignore_errors=True)
    run(["dvc", "repro", "-f"], root)
    # Metrics and details are compared below, accounting aside; DVCLive's curves carry wall-clock timestamps.
    outs = lambda text: {s: [(o["path"], o.get("md5")) for o in v.get("outs", [])  # noqa: E731
                             if not o["path"].startswith(("metrics/", "reports/details/", "dvclive"))]
                         for s, v in yaml.safe_load(text)["stages"].items()}
    assert outs((root / "dvc.lock").read_text()) == outs(before)
    assert {p.name: without_accounting(json.loads(p.read_text())) for p in (root / "reports/details").glob("*.json")} == figures


ACCOUNTING = {"calls", "cache_hits", "journal_hits", "retries", "call_failures", "fallbacks", "input_tokens",
              "output_tokens", "cost_usd", "rate_limit_wait_s", "by_provider", "unpriced_models",
              "this_run", "calls_per_accepted",  # generate: what this run paid for, not what it made
              "train_seconds", "seconds_per_epoch", "tokens_per_second", "peak_rss_gb"}  # train_chat: this machine's speed


def without_accounting(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ACCOUNTING}


def test_a_temporary_experiment_pays_nothing_for_calls_already_made(project):
    """`dvc exp run --temp` runs in a copy under .dvc/tmp/exps without the gitignored .distillery/;
    the call cache is the repository's, so a rerun of calibrate with the same prompts is all hits."""
    root, _ = project
    run(["dvc", "repro"], root)
    out = run(["dvc", "exp", "run", "--temp", "-S", "calibrate.thresholds.fp_pass=0.11", "-n", "shared-cache"], root)
    assert "Running stage 'calibrate'" in out.stdout
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root).stdout)
    found = [d for d in _dicts(shown) if d.get("name") == "shared-cache"]
    calibrate = next(d for d in _dicts(found) if isinstance(d.get("data"), dict) and "false_positive_rate" in d["data"])
    assert calibrate["data"]["calls"] == 0 and calibrate["data"]["n"] > 0  # every reply from the shared cache


def _dicts(obj):
    """Every dict inside a JSON value (dvc exp show's nesting differs between DVC versions)."""
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _dicts(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _dicts(v)


def test_make_compare_fits_the_experiments_on_one_screen(project):
    root, _ = project
    full = run(["dvc", "exp", "show", "--csv"], root).stdout.splitlines()[0].split(",")
    shown = run(["python", "-m", "distillery.pipeline.compare"], root).stdout.splitlines()
    header = shown[0].split()
    assert len(full) > 2 * len(header) and len(header) < 40  # every param and figure vs the ones that decide
    assert "validate.verdict" in header and "evaluate.verdict" in header and "label.calls" in header
    assert "calibrate.thresholds.fp_pass" in header  # the param the experiment changed
    assert any("shared-cache" in line for line in shown[1:])


def test_queued_experiments_share_the_call_cache_and_plots_diff_compares_them(project):
    """Two experiments at once (`dvc queue start -j 2`), each in its own copy of the workspace, pay for
    new calibration samples into the one call cache; their plot files are versioned, so `dvc plots
    diff` draws both; and a later run of either sample is answered from the cache alone."""
    root, _ = project
    run(["dvc", "repro"], root)
    for seed in (101, 202):
        run(["dvc", "exp", "run", "--queue", "-S", f"calibrate.seed={seed}", "-S", f"train.learning_rate={seed}e-6",
             "-n", f"q{seed}"], root)
    run(["dvc", "queue", "start", "-j", "2"], root)
    run(["dvc", "queue", "wait", "q101"], root, check=False)
    run(["dvc", "queue", "wait", "q202"], root, check=False)
    status = run(["dvc", "queue", "status"], root).stdout
    assert status.count("Success") == 2, status + run(["dvc", "queue", "logs", "q101"], root, check=False).stdout
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root).stdout)
    for name in ("q101", "q202"):
        exp = next(d for d in _dicts(shown) if d.get("name") == name)
        calibrate = next(d for d in _dicts(exp) if isinstance(d.get("data"), dict) and "false_positive_rate" in d["data"])
        assert calibrate["data"]["calls"] > 0, name  # a new sample: paid for, into the shared cache
    diff = json.loads(run(["dvc", "plots", "diff", "q101", "q202", "--json"], root).stdout)["data"]
    for plot in ("train_rmse", "val_mae", "plots/test_predictions.json"):
        revs = {row["rev"] for spec in diff[plot] for row in spec["content"]["data"]["values"]}
        assert revs == {"q101", "q202"}, (plot, revs)
    # -f: DVC's run cache would restore calibrate's outputs without running it; the call cache is the point here.
    out = run(["dvc", "exp", "run", "--temp", "-f", "calibrate", "-S", "calibrate.seed=101", "-n", "again"], root)
    assert "Running stage 'calibrate'" in out.stdout
    again = next(d for d in _dicts(json.loads(run(["dvc", "exp", "show", "--json"], root).stdout))
                 if d.get("name") == "again")
    calibrate = next(d for d in _dicts(again) if isinstance(d.get("data"), dict) and "false_positive_rate" in d["data"])
    assert calibrate["data"]["calls"] == 0 and calibrate["data"]["n"] > 0


def test_generate_params_touch_generate_alone_and_template_mining_params_do_not(project):
    """DVC tracks generate's own section (and the known phrases it rejects): a change there reruns
    generate (then whatever reads its corpus); a mining threshold of detect_templates leaves it alone."""
    root, _ = project
    run(["dvc", "repro"], root)
    original = (root / "params.yaml").read_text()
    for section, key, value, expected in (("generate", "per_call", 3, {"generate"}),
                                          ("detect_templates", "min_count", 6, {"detect_templates"})):
        params = yaml.safe_load(original)
        params[section][key] = value
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        changed = {name.split(":")[-1] for name in json.loads(run(["dvc", "status", "--json"], root).stdout)}
        assert changed == expected, (section, changed)
    (root / "params.yaml").write_text(original)
