import copy
from pathlib import Path

import pytest
import yaml

from deepsaliency.config import load_params, validate
from deepsaliency.errors import ParamError

DEFAULTS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())


def with_change(path: str, value):
    params = copy.deepcopy(DEFAULTS)
    *parents, leaf = path.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[leaf] = value
    return params


def test_the_shipped_params_are_valid():
    clean = validate(copy.deepcopy(DEFAULTS))
    assert clean["rise"]["N"] == DEFAULTS["rise"]["N"]


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("rise.p1", 1.5, r"rise.p1: 1.5 is not allowed \(expected a number in \(0, 1\)\)"),
        ("rise.p1", 0, r"rise.p1: 0 is not allowed"),
        ("rise.N", 0, r"rise.N: 0 is not allowed \(expected an integer ≥ 1\)"),
        ("rise.N", "many", r"rise.N: 'many' is not allowed"),
        ("rise.N", 2.5, r"rise.N: 2.5 is not allowed"),
        ("rise.s", 0, r"rise.s: 0 is not allowed"),
        ("rise.s", 500, r"rise.s: 500 is not allowed \(an integer in \[1, 224\], model.input_size\)"),
        ("rise.batch_size", 0, r"rise.batch_size: 0 is not allowed \(expected 'auto' or an integer ≥ 1\)"),
        ("explain.methods", ["saliency", "lime"], r"explain.methods: \['saliency', 'lime'\] is not allowed \(expected a list of distinct names from rise, "),
        ("explain.methods", [], r"explain.methods: \[\] is not allowed"),
        ("explain.target", 1000, r"explain.target: 1000 is not allowed"),
        ("model.device", "tpu", r"model.device: 'tpu' is not allowed"),
        ("integrated_gradients.n_steps", -5, r"integrated_gradients.n_steps: -5 is not allowed"),
        ("smoothgrad.stdevs", 0.0, r"smoothgrad.stdevs: 0.0 is not allowed \(expected a number > 0\)"),
        ("prepare.resize", "squash", r"prepare.resize: 'squash' is not allowed \(expected one of stretch, center_crop\)"),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(path, value, message):
    with pytest.raises(ParamError, match=message) as info:
        validate(with_change(path, value))
    assert "\n" not in str(info.value)


def test_typos_and_missing_keys_are_caught():
    params = copy.deepcopy(DEFAULTS)
    params["rise"]["NN"] = params["rise"].pop("N")
    with pytest.raises(ParamError, match=r"rise.NN: unknown key \(allowed in 'rise': N, s, p1, seed, batch_size\)"):
        validate(params)
    params = copy.deepcopy(DEFAULTS)
    del params["rise"]["N"]
    with pytest.raises(ParamError, match=r"rise.N: missing"):
        validate(params)
    params = copy.deepcopy(DEFAULTS)
    params["rsie"] = {}
    with pytest.raises(ParamError, match=r"unknown section 'rsie'"):
        validate(params)


def test_unreadable_params_file(tmp_path):
    with pytest.raises(ParamError, match="parameter file does not exist"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("rise: [unclosed\n")
    with pytest.raises(ParamError, match=r"params.yaml: not valid YAML at line 2"):
        load_params(bad)
