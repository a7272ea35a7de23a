"""dvc.yaml cannot drift from the code: each stage lists every library module its script imports.

The import closure is read statically from the stage script (lazy imports inside functions and the
providers a stage can load by name included), so a change to any module a stage uses reruns it.
"""
import yaml

from distillery.pipeline.deps import import_closure, missing_deps
from distillery.pipeline.plan import llm_stages
from tests.conftest import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_lists_every_module_it_imports_and_no_other():
    problems = {}
    for name, stage in STAGES.items():
        missing, stale = missing_deps(stage, ROOT)
        if missing or stale:
            problems[name] = {"missing": missing, "not used": stale}
    assert problems == {}


def test_the_closure_follows_lazy_imports_and_providers_loaded_by_name():
    used = {str(p) for p in import_closure(ROOT / "stages" / "label.py", ROOT / "src")}
    assert "src/distillery/providers/anthropic.py" in used  # named in params, loaded by REGISTRY
    assert "src/distillery/testing/fake.py" in used
    split = {str(p) for p in import_closure(ROOT / "stages" / "split.py", ROOT / "src")}
    assert "src/distillery/text/neardup.py" in split  # imported inside a function


def test_a_missing_dep_is_caught(tmp_path):
    stage = dict(STAGES["split"])
    stage["deps"] = [d for d in stage["deps"] if d != "src/distillery/text/neardup.py"]
    missing, _ = missing_deps(stage, ROOT)
    assert missing == ["src/distillery/text/neardup.py"]


def test_make_plan_finds_the_llm_stages_from_their_imports():
    # train_chat: a hosted fine-tuning job is planned (training tokens × epochs, cost) like the LLM calls
    assert llm_stages({"stages": STAGES}, ROOT) == ["generate", "calibrate", "validate", "regenerate", "label",
                                                    "train_chat", "evaluate_chat"]
