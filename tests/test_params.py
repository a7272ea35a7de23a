import pytest

from distillery import params as P
from tests.conftest import ROOT


def test_shipped_params_yaml_parses_into_every_section():
    path = ROOT / "params.yaml"
    for section, cls in [("base", P.BaseParams), ("filter", P.FilterParams), ("calibrate", P.SampleParams),
                         ("validate", P.SampleParams), ("label", P.LabelParams),
                         ("detect_templates", P.TemplateParams), ("regenerate", P.RegenerateParams),
                         ("split", P.SplitParams), ("train", P.TrainParams), ("evaluate", P.EvaluateParams)]:
        assert isinstance(P.load_section(path, section, cls), cls)


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


def test_label_refuses_on_fail_by_default():
    assert P.LabelParams().proceed_on_fail is False
