import copy
from pathlib import Path

import pytest
import yaml

from deepsaliency.errors import ParamError
from deepsaliency.params import load_params, validate

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
        ("compute.shards", [], r"compute.shards: \[\] is not allowed \(expected the shard indices \[0, 1, …, n − 1\]"),
        ("compute.shards", [0, 2], r"compute.shards: \[0, 2\] is not allowed \(expected the shard indices"),
        ("compute.shards", [1, 0], r"compute.shards: \[1, 0\] is not allowed"),
        ("compute.shards", 4, r"compute.shards: 4 is not allowed \(expected the shard indices"),
        (
            "explain.methods",
            ["saliency", "lime"],
            r"explain.methods: \['saliency', 'lime'\] is not allowed \(expected a list of distinct names from rise, ",
        ),
        ("explain.methods", [], r"explain.methods: \[\] is not allowed"),
        ("explain.target", 1000, r"explain.target: 1000 is not allowed"),
        ("model.device", "tpu", r"model.device: 'tpu' is not allowed"),
        ("integrated_gradients.n_steps", -5, r"integrated_gradients.n_steps: -5 is not allowed"),
        ("smoothgrad.stdevs", 0.0, r"smoothgrad.stdevs: 0.0 is not allowed \(expected a number > 0\)"),
        (
            "prepare.resize",
            "squash",
            r"prepare.resize: 'squash' is not allowed \(expected one of stretch, center_crop\)",
        ),
        ("attack.saliency.num_iter", -1, r"attack.saliency.num_iter: -1 is not allowed \(expected an integer ≥ 1\)"),
        ("attack.smoothgrad.lr", -0.1, r"attack.smoothgrad.lr: -0.1 is not allowed \(expected a number in \(0, 1\]\)"),
        (
            "attack.saliency.lr_end",
            0.5,
            r"attack.saliency.lr_end: 0.5 is not allowed \(a number in \[0, 0.002\], attack.saliency.lr\)",
        ),
        (
            "attack.eps",
            -0.01,
            r"attack.eps: -0.01 is not allowed \(expected a non-empty list of distinct numbers in \[0, 255\]",
        ),
        (
            "attack.eps",
            [-1, 8],
            r"attack.eps: \[-1, 8\] is not allowed \(expected a non-empty list of distinct numbers",
        ),
        ("attack.eps", [8, 8.0], r"attack.eps: \[8, 8.0\] is not allowed"),
        ("attack.eps", [], r"attack.eps: \[\] is not allowed"),
        (
            "attack.tol",
            -1e-3,
            r"attack.tol: -0.001 is not allowed \(expected null \(always num_iter steps\) or a number in",
        ),
        ("report.rank_eps", 16, r"report.rank_eps: 16 is not allowed \(null or one of attack.eps: 4, 8\)"),
        (
            "attack.methods",
            ["saliency", "occlusion"],
            r"attack.methods: \['saliency', 'occlusion'\] is not allowed "
            r"\(expected a list of distinct names from rise, integrated_gradients, saliency, ",
        ),
        ("attack.rise.masks", 100000, r"attack.rise.masks: 100000 is not allowed \(an integer in \[1, \d+\], rise.N\)"),
        ("attack.rise", None, r"section 'attack.rise' is missing or not a mapping"),
        (
            "explain.methods",
            ["rise", "saliency"],
            r"attack.methods: 'input_x_gradient' is not allowed \(attacked methods must also be in explain.methods",
        ),
        ("pgd.eps", 0, r"pgd.eps: 0 is not allowed"),
        (
            "metrics.top_k",
            10**6,
            r"metrics.top_k: 1000000 is not allowed \(an integer in \[1, 50176\] for model.input_size 224\)",
        ),
        (
            "faithfulness.blur_kernel",
            10,
            r"faithfulness.blur_kernel: 10 is not allowed \(expected an odd integer ≥ 1\)",
        ),
        (
            "faithfulness.substrate",
            "noise",
            r"faithfulness.substrate: 'noise' is not allowed \(expected one of mean, zero, blur\)",
        ),
        (
            "plots.signed_cmap",
            "rainbowz",
            r"plots.signed_cmap: 'rainbowz' is not allowed \(expected a matplotlib colour map name",
        ),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(path, value, message):
    with pytest.raises(ParamError, match=message) as info:
        validate(with_change(path, value))
    assert "\n" not in str(info.value)


def test_typos_and_missing_keys_are_caught():
    params = copy.deepcopy(DEFAULTS)
    params["rise"]["NN"] = params["rise"].pop("N")
    with pytest.raises(
        ParamError, match=r"rise.NN: unknown key \(allowed in 'rise': N, s, p1, seed, batch_size, sampling\)"
    ):
        validate(params)
    params = copy.deepcopy(DEFAULTS)
    del params["rise"]["N"]
    with pytest.raises(ParamError, match=r"rise.N: missing"):
        validate(params)
    params = copy.deepcopy(DEFAULTS)
    params["attack"]["saliency"]["num_iters"] = 10
    with pytest.raises(
        ParamError,
        match=r"attack.saliency.num_iters: unknown key "
        r"\(allowed in 'attack.saliency': num_iter, lr, lr_end, a, eval_every\)",
    ):
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


# --- issue 12: every cross-parameter constraint is caught by validation, naming the key ------------------

from deepsaliency.attribution import check_model_params  # noqa: E402


def with_changes(**changes):
    params = copy.deepcopy(DEFAULTS)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = params
        for key in parents:
            node = node[key]
        node[leaf] = value
    return params


@pytest.mark.parametrize(
    "changes, message",
    [
        # Captum's Occlusion asserts stride ≤ window wherever the window does not cover the input.
        (
            dict(occlusion__window=8, occlusion__stride=32),
            r"^occlusion.stride: 32 is not allowed \(an integer in \[1, 8\], occlusion.window 8; "
            r"Captum's Occlusion needs stride ≤ window\)$",
        ),
        (
            dict(occlusion__window=224, occlusion__stride=300),
            r"^occlusion.stride: 300 is not allowed \(an integer in \[1, 224\], model.input_size\)$",
        ),
        (
            dict(occlusion__window=500),
            r"^occlusion.window: 500 is not allowed \(an integer in \[1, 224\], model.input_size\)$",
        ),
        (
            dict(
                model__input_size=64,
                occlusion__window=32,
                occlusion__stride=24,
                faithfulness__step=100,
                metrics__top_k=100,
                rise__s=8,
                faithfulness__blur_kernel=129,
            ),
            r"^faithfulness.blur_kernel: 129 is not allowed \(an odd integer in \[1, 127\]",
        ),
        (
            dict(integrated_gradients__integration="riemann_trapezoid", integrated_gradients__n_steps=1),
            r"^integrated_gradients.n_steps: 1 is not allowed \(an integer ≥ 2, integration riemann_trapezoid\)$",
        ),
        (
            dict(
                integrated_gradients__integration="riemann_left",
                attack__integrated_gradients__n_steps=1,
                attack__integrated_gradients__resample=False,
            ),
            r"^attack.integrated_gradients.n_steps: 1 is not allowed \(an integer ≥ 2, integration riemann_left\)$",
        ),
        (
            dict(attack__target_image="chelsea", compute__shards=[0, 1]),
            r"^attack.target_image: 'chelsea' is not allowed \('next' when compute.shards has 2 shards: an image is "
            r"attacked toward another image of its own shard\)$",
        ),
        (
            dict(
                explain__methods=["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "gradcam"],
                attack__methods=["saliency"],
            ),
            r"^plots.min_max_methods: 'rise' is not allowed \(methods must also be in explain.methods: saliency, ",
        ),
    ],
)
def test_cross_parameter_constraints_name_the_key(changes, message):
    with pytest.raises(ParamError, match=message) as info:
        validate(with_changes(**changes))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "changes",
    [
        dict(occlusion__window=8, occlusion__stride=8),
        dict(occlusion__window=224, occlusion__stride=224),  # one position: any stride up to the input runs
        dict(integrated_gradients__n_steps=1),  # Gauss–Legendre with one node is fine
        dict(
            integrated_gradients__integration="riemann_left",
            attack__integrated_gradients__n_steps=1,
            attack__integrated_gradients__resample=True,
        ),  # random path points, no Riemann rule
        dict(faithfulness__blur_kernel=447),
        dict(
            explain__methods=[  # exactly the attacked methods
                *["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "rise"],
                *["gradcam", "saliency_smoothed", "input_x_gradient_smoothed", "integrated_gradients_smoothed"],
            ],
            plots__min_max_methods=[],
        ),
        dict(compute__shards=[0, 1, 2, 3]),
        dict(attack__target_image="chelsea", compute__shards=[0]),  # one shard: every image is in it
    ],
)
def test_the_edges_of_the_cross_constraints_are_accepted(changes):
    validate(with_changes(**changes))


@pytest.mark.parametrize(
    "layer, message",
    [
        (
            "net.classifier",
            r"^gradcam.layer: 'net.classifier' outputs shape \(1, 1000\); Grad-CAM needs a feature map \(B, C, h, w\)$",
        ),
        ("net.global_pool", r"^gradcam.layer: 'net.global_pool' outputs shape \(1, 1280\); Grad-CAM needs a feature"),
        ("net", r"^gradcam.layer: 'net' outputs shape \(1, 1000\); Grad-CAM needs a feature map"),
        ("net.bn9", r"^gradcam.layer: 'net.bn9' is not a submodule of the model"),
    ],
)
def test_model_dependent_checks_name_gradcam_layer(model, layer, message):
    params = validate(with_change("gradcam.layer", layer))  # a string: the schema alone cannot tell
    with pytest.raises(ParamError, match=message):
        check_model_params(params, model)


def test_model_dependent_checks_accept_the_defaults_and_bound_the_target_by_the_model(model):
    check_model_params(validate(copy.deepcopy(DEFAULTS)), model)
    check_model_params(validate(with_change("gradcam.layer", "net.blocks.5")), model)  # an inner feature map is fine
    params = validate(with_change("explain.target", 999))
    params["explain"]["target"] = 1000  # as if a schema allowed it: the model's 1000 classes still bound it
    with pytest.raises(ParamError, match=r"^explain.target: 1000 is not allowed \(a class index in \[0, 999\]\)$"):
        check_model_params(params, model)
