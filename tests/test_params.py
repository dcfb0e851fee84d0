"""The typed params (issue 13): one default per key, equal to params.yaml, to the README table and to the
library's signatures; the new sections' one-line errors; strict types."""

import copy
import functools
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deepsaliency import attribution, backend, defence, differentiable, experiments, rise
from deepsaliency.errors import ParamError
from deepsaliency.params import DEFAULTS, Params, load_params, section_defaults, validate
from deepsaliency.params.docs import table

ROOT = Path(__file__).resolve().parents[1]
YAML = yaml.safe_load((ROOT / "params.yaml").read_text())


def changed(path: str, value):
    """params.yaml with the dotted key ``path`` set to ``value``."""
    params = copy.deepcopy(YAML)
    *sections, leaf = path.split(".")
    functools.reduce(dict.__getitem__, sections, params)[leaf] = value
    return params


def test_params_yaml_equals_the_models_defaults():
    # The one default of every key is the model's; params.yaml may not drift from it (same keys, same values).
    assert Params().model_dump() == YAML
    assert validate(copy.deepcopy(YAML)) == YAML


def test_the_typed_object_and_the_dicts_agree():
    typed = Params.load(ROOT / "params.yaml")
    assert typed.attack.saliency.lr == YAML["attack"]["saliency"]["lr"] == 0.002
    assert typed.model_dump() == load_params(ROOT / "params.yaml")
    with pytest.raises(Exception, match="frozen"):
        typed.rise.N = 5  # type: ignore[misc]


def test_the_readme_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Parameters", 1)[1]
    first_gap = next(i for i, line in enumerate(section.splitlines()) if line.startswith("### "))
    rows = [line for line in section.splitlines()[:first_gap] if line.startswith("|")]
    assert "\n".join(rows) + "\n" == table()
    printed = subprocess.run(
        [sys.executable, "-m", "deepsaliency.params"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert printed.stdout == table()
    assert len(rows) - 2 > 100  # one row per key (the attack's per-method keys folded)


def test_a_changed_default_changes_the_table():
    params = Params.model_validate(changed("rise.N", 4000))
    assert "| `rise.N` | `4000` |" in table(params)
    assert "| `rise.N` | `500` |" in table()


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("rise.N", True, r"^rise.N: True is not allowed \(expected an integer ≥ 1\)$"),
        ("model.input_size", False, r"^model.input_size: False is not allowed \(expected an integer in \[8, 1024\]\)$"),
        ("attack.saliency.eval_every", True, r"^attack.saliency.eval_every: True is not allowed"),
        ("smoothgrad.stdevs", True, r"^smoothgrad.stdevs: True is not allowed \(expected a number > 0\)$"),
        ("saliency.abs", 1, r"^saliency.abs: 1 is not allowed \(expected true or false\)$"),
        ("rise.N", "500", r"^rise.N: '500' is not allowed"),
        ("smoothgrad.stdevs", float("nan"), r"^smoothgrad.stdevs: nan is not allowed"),
        ("attack.eps", [4, True], r"^attack.eps: \[4, True\] is not allowed"),
    ],
)
def test_strict_types_bool_is_not_an_integer(path, value, message):
    with pytest.raises(ParamError, match=message):
        validate(changed(path, value))


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("untargeted.eps", [8, 16], r"^untargeted.eps: 16 is not allowed \(one of attack.eps: 4, 8\)$"),
        ("untargeted.eps", [], r"^untargeted.eps: \[\] is not allowed \(expected a non-empty list of distinct"),
        ("untargeted.methods", ["saliency", "occlusion"], r"^untargeted.methods: \['saliency', 'occlusion'\] is not "),
        ("untargeted.methods", ["saliency", "saliency"], r"^untargeted.methods: .* \(expected a list of distinct"),
        ("untargeted.kinds", ["topk", "mass"], r"distinct names from topk, center_of_mass\)$"),
        ("untargeted.k", 0, r"^untargeted.k: 0 is not allowed \(expected an integer ≥ 1\)$"),
        ("untargeted.k", 60000, r"^untargeted.k: 60000 is not allowed \(an integer in \[1, 50176\] for model.input_"),
        ("untargeted.lr", 0.0, r"^untargeted.lr: 0.0 is not allowed \(expected a number in \(0, 1\]\)$"),
        ("untargeted.lr_end", 0.01, r"^untargeted.lr_end: 0.01 is not allowed \(a number in \[0, 0.002\], untargeted"),
        ("untargeted.a_topk", -1.0, r"^untargeted.a_topk: -1.0 is not allowed \(expected a number ≥ 0\)$"),
        ("compute.backend", "dask", r"^compute.backend: 'dask' is not allowed \(expected one of local, ray\)$"),
        ("compute.threads", 0, r"^compute.threads: 0 is not allowed \(expected null \(torch's default\) or an integer"),
        ("compute.gpus_per_worker", -0.5, r"^compute.gpus_per_worker: -0.5 is not allowed \(expected a number ≥ 0\)$"),
        ("compute.ray_address", "http://x:1", r"^compute.ray_address: 'http://x:1' is not allowed \(expected null"),
        ("attack.gradcam.lr", 0, r"^attack.gradcam.lr: 0 is not allowed \(expected a number in \(0, 1\]\)$"),
        (
            "attack.integrated_gradients_smoothed.lr_end",
            0.5,
            r"^attack.integrated_gradients_smoothed.lr_end: 0.5 is not allowed \(a number in \[0, 0.003\]",
        ),
        ("attack.saliency_smoothed", None, r"section 'attack.saliency_smoothed' is missing or not a mapping$"),
    ],
)
def test_the_new_sections_errors_are_one_line_naming_the_key(path, value, message):
    with pytest.raises(ParamError, match=message) as info:
        validate(changed(path, value))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "path, value",
    [("compute.ray_address", "auto"), ("compute.ray_address", "ray://head:10001"), ("untargeted.eps", [4])],
)
def test_the_new_sections_accept_their_documented_values(path, value):
    assert validate(changed(path, value))[path.split(".")[0]][path.split(".")[1]] == value


def test_missing_new_keys_are_named():
    params = copy.deepcopy(YAML)
    del params["untargeted"]["kinds"]
    with pytest.raises(ParamError, match=r"^untargeted.kinds: missing \(expected a list of distinct names from topk"):
        validate(params)
    params = copy.deepcopy(YAML)
    del params["compute"]
    with pytest.raises(ParamError, match=r"section 'compute' is missing or not a mapping"):
        validate(params)


def test_compute_feeds_the_backend_settings():
    settings = backend.Compute(**Params.model_validate(changed("compute.threads", 3)).compute.kwargs())
    assert isinstance(settings, backend.Compute)
    assert (settings.backend, settings.workers, settings.threads, settings.ray_address) == ("local", 2, 3, None)


def test_sections_give_the_library_calls_their_keyword_arguments():
    params = load_params(ROOT / "params.yaml")
    assert experiments.method_kwargs(params, "integrated_gradients") == YAML["integrated_gradients"]
    run = experiments.attack_run_params(params, "integrated_gradients")
    assert run == {**{k: v for k, v in YAML["attack"]["integrated_gradients"].items() if k != "n_steps"}, "b": 1e6,
                   "beta_start": 10.0, "beta_end": 100.0, "tol": 0.001, "eps": [4, 8]}  # fmt: skip
    assert experiments.attack_explanation_params(params, "integrated_gradients") == {
        "n_steps": 4,
        "integration": "gausslegendre",
    }
    assert experiments.attack_explanation_params(params, "rise", masks="M") == {
        "masks": "M",
        "rise_masks": 16,
        "mask_seed": 0,
    }
    assert experiments.attack_explanation_params(params, "saliency_smoothed") == {"beta": 10.0, "abs": True}


def test_rise_batch_size_auto_is_resolved_by_one_function(monkeypatch):
    # Issue 13: the explain stages (method_kwargs, once: RISE then runs once per image) and rise_saliency
    # both resolve `auto` through rise.resolve_batch_size; before, method_kwargs measured it itself.
    calls = []
    monkeypatch.setattr(rise, "auto_batch_size", lambda model, input_size: calls.append(input_size) or 3)
    model = type("Stub", (), {"input_size": (224, 224)})()
    kwargs = experiments.method_kwargs(changed("rise.batch_size", "auto"), "rise", model, masks="M")
    assert kwargs == {"masks": "M", "batch_size": 3} and calls == [(224, 224)]
    assert experiments.method_kwargs(YAML, "rise", model)["batch_size"] == YAML["rise"]["batch_size"] == 8
    assert rise.resolve_batch_size(model, "auto", (7, 9)) == 3 and calls[-1] == (7, 9)
    with pytest.raises(ParamError, match=r"^batch_size: 0 is not allowed \('auto' or an integer ≥ 1\)$"):
        rise.resolve_batch_size(model, 0, (7, 9))


def _defaults(function) -> dict:
    return {k: p.default for k, p in inspect.signature(function).parameters.items() if p.default is not p.empty}


#: section → the library functions it feeds (the explain stage's Captum calls, the defence, the attack's
#: differentiable explanations, the RISE masks).
FED = {
    "integrated_gradients": [attribution._integrated_gradients, differentiable._integrated_gradients],
    "smoothgrad": [attribution._smoothgrad, differentiable._smoothgrad],
    "gradient_shap": [attribution._gradient_shap],
    "occlusion": [attribution._occlusion],
    "saliency": [attribution._saliency, differentiable._saliency],
    "gradcam": [attribution._gradcam, differentiable._gradcam],
    # the defence's Captum calls and the attack's differentiable versions (its beta once defaulted to 10.0 itself)
    **{m: [getattr(defence, m), differentiable._DISPATCH[m]] for m in defence.DEFENCE_METHODS},
    "rise": [rise.generate_masks],
}


@pytest.mark.parametrize("section, function", [(s, f) for s, functions in FED.items() for f in functions])
def test_the_library_defaults_are_the_params_defaults(section, function):
    # integrated gradients' n_steps once had six defaults (50 in the library, 32 in params.yaml).
    shared = {k: v for k, v in _defaults(function).items() if k in YAML[section]}
    assert shared and shared == {k: YAML[section][k] for k in shared}


def test_the_masks_default_to_the_model_input_size():
    assert DEFAULTS.integrated_gradients.n_steps == YAML["integrated_gradients"]["n_steps"] == 32
    assert _defaults(rise.generate_masks)["input_size"] == YAML["model"]["input_size"]


def test_reading_params_imports_no_torch():
    code = (
        "import sys, deepsaliency.params as p; p.load_params(); print(sorted({'torch', 'captum'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"  # the prepare, masks, metrics and report stages do not pay for torch here


def test_section_defaults_refuses_a_key_that_cannot_take_a_default():
    def explain(model, stdevs, target):  # a key before a parameter without a default
        return stdevs

    with pytest.raises(TypeError, match=r"parameter 'stdevs' cannot take a default"):
        section_defaults(DEFAULTS.smoothgrad)(explain)

    def explain_ok(model, stdevs, seed=3, progress=False):
        return stdevs

    section_defaults(DEFAULTS.smoothgrad)(explain_ok)
    assert _defaults(explain_ok) == {"stdevs": 0.15, "seed": 0, "progress": False}
