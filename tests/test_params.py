import dataclasses

import pytest
import yaml

from distillery import params as P
from tests.conftest import ROOT


def shipped() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_shipped_params_yaml_parses_into_every_section():
    params = P.load_params(ROOT / "params.yaml")
    assert {f.name for f in dataclasses.fields(P.Params)} == set(shipped())
    assert params.split.train == 0.7 and params.calibrate.thresholds.fp_pass == 0.10


def _defaults_disagreeing(code, shipped_value, where=""):
    """Paths where the code's default is a value (not None / empty) and differs from params.yaml."""
    if dataclasses.is_dataclass(code):
        out = []
        for f in dataclasses.fields(code):
            if f.name in shipped_value:
                out += _defaults_disagreeing(getattr(code, f.name), shipped_value[f.name], f"{where}.{f.name}")
        return out
    if code in (None, [], {}):  # "not set": params.yaml may set it
        return []
    if isinstance(code, list) and isinstance(shipped_value, list) and len(code) == len(shipped_value):
        return [p for i, (c, v) in enumerate(zip(code, shipped_value)) for p in _defaults_disagreeing(c, v, f"{where}[{i}]")]
    if isinstance(code, dict) and isinstance(shipped_value, dict):
        return [p for k in code for p in _defaults_disagreeing(code[k], shipped_value.get(k), f"{where}.{k}")]
    return [] if code == shipped_value else [f"{where}: code {code!r}, params.yaml {shipped_value!r}"]


def test_the_codes_defaults_are_the_shipped_params_yaml():
    data = shipped()
    wrong = []
    for f in dataclasses.fields(P.Params):
        if f.default_factory is not dataclasses.MISSING:  # filter and label are required sections
            wrong += _defaults_disagreeing(f.default_factory(), data[f.name], f.name)
    wrong += _defaults_disagreeing(P.LabelParams(proceed_on_fail=data["label"]["proceed_on_fail"]), data["label"], "label")
    # The demo's knobs set for its 135M model and its CPU budget rather than for real work; params.yaml says
    # so beside each.
    assert wrong == ["regenerate.max_attempts: code 2, params.yaml 1",
                     "generate.per_call: code 5, params.yaml 1", "train_chat.learning_rate: code 0.0002, params.yaml 0.001",
                     "train_chat.batch_size: code 8, params.yaml 4", "train_chat.max_length: code 512, params.yaml 256",
                     "train_chat.max_examples: code 0, params.yaml 32", "evaluate_chat.max_examples: code 0, params.yaml 8",
                     "evaluate_chat.max_new_tokens: code 128, params.yaml 48"]
    # …and every key without a default is in the shipped file
    assert "proceed_on_fail" in data["label"]


def test_a_misspelled_section_is_rejected_by_name(tmp_path):
    data = shipped()
    data["splt"] = data.pop("split")
    with pytest.raises(P.ParamsError, match=r"unknown section 'splt'"):
        P.load_params(write(tmp_path, data))


def test_a_section_left_out_takes_the_shipped_defaults_but_a_required_key_must_be_set(tmp_path):
    data = shipped()
    del data["split"]
    assert P.load_params(write(tmp_path, data)).split.train == 0.7
    del data["label"]["proceed_on_fail"]
    with pytest.raises(P.ParamsError, match=r"label.proceed_on_fail is required"):
        P.load_params(write(tmp_path, data))


def test_stage_seeds_derive_from_base_seed_unless_given(tmp_path):
    data = shipped()
    for section in ("split", "calibrate", "validate", "diversity"):
        data[section].pop("seed", None)
    one = P.load_params(write(tmp_path, data))
    data["base"]["seed"] = 43
    other = P.load_params(write(tmp_path, data))
    seeds = [one.split.seed, one.calibrate.seed, one.validate.seed, one.diversity.seed]
    assert len(set(seeds)) == 4  # no two stages draw the same numbers
    assert other.split.seed != one.split.seed  # …and they move with base.seed
    data["split"]["seed"] = 5
    assert P.load_params(write(tmp_path, data)).split.seed == 5


def test_calibrate_and_validate_share_one_set_of_thresholds():
    assert "thresholds" not in shipped()["validate"]
    assert not hasattr(P.ValidateParams(), "thresholds")


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(P.ParamsError, match=r"split: unknown key 'sead'"):
        P.from_dict(P.SplitParams, {"sead": 1}, "split")


def test_nested_unknown_key_names_its_path():
    with pytest.raises(P.ParamsError, match=r"train.lora: unknown key 'rank'"):
        P.from_dict(P.TrainParams, {"lora": {"rank": 8}}, "train")


def test_wrong_type_is_rejected():
    with pytest.raises(P.ParamsError, match=r"split.seed: expected int"):
        P.from_dict(P.SplitParams, {"seed": "forty-two"}, "split")


def test_yaml_exponent_string_becomes_float():
    assert P.from_dict(P.TrainParams, {"learning_rate": "5e-5"}, "train").learning_rate == 5e-5


def test_filter_weights_must_sum_to_one(filt):
    dims = {k: {"weight": 0.5, "description": "x"} for k in ("a", "b", "c")}
    with pytest.raises(P.ParamsError, match="sum to 1.5"):
        P.from_dict(P.FilterParams, {"name": "f", "dimensions": dims, "tiers": {"low": 0}}, "filter")


def test_label_has_no_default_for_proceeding_after_a_failed_validation():
    with pytest.raises(TypeError):
        P.LabelParams()


@pytest.mark.parametrize("override", ["split.seed=7", "train.lora.enabled=true", "detect_templates.min_count=12",
                                      "label.max_failure_rate=0.2"])
def test_dvc_exp_run_set_param_changes_only_the_value_it_sets(tmp_path, override):
    """`dvc exp run -S` rewrites params.yaml through DVC's YAML round trip (dvc.utils.hydra.apply_overrides);
    the shipped file is already in the form it writes, so a review sees one changed line."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    before = (ROOT / "params.yaml").read_text()
    path.write_text(before)
    apply_overrides(path, [override])
    changed = [(a, b) for a, b in zip(before.splitlines(), path.read_text().splitlines()) if a != b]
    assert len(changed) == 1 and len(before.splitlines()) == len(path.read_text().splitlines())
    assert override.split("=")[1] in changed[0][1]
