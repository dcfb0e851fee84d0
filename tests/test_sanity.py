"""Model-parameter randomisation (deepsaliency.metrics.sanity) on the real model, a tiny net and against Quantus."""

import importlib.util
import json
import shutil
import statistics
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
import yaml
from torch import nn

from deepsaliency import Model
from deepsaliency.errors import ParamError
from deepsaliency.metrics import sanity

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _tiny_model() -> Model:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU6(),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    return Model(net, input_size=(16, 16), name="tiny").eval()


def _tiny_images() -> torch.Tensor:
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))


def test_layer_groups_of_the_embedded_model_run_from_the_logits_down(model):
    groups = sanity.layer_groups(model)
    assert groups[:3] == ["net.classifier", "net.conv_head", "net.blocks.6"]
    assert groups[-2:] == ["net.blocks.0", "net.conv_stem"] and len(groups) == 10
    with pytest.raises(ParamError, match="^groups: 'auto' needs a timm EfficientNet"):
        sanity.layer_groups(_tiny_model())


def test_randomize_group_is_seeded_and_resets_only_that_group():
    a, b = _tiny_model(), _tiny_model()
    before = {k: v.clone() for k, v in a.state_dict().items()}
    state = torch.random.get_rng_state()
    assert sanity.randomize_group(a, "net.2", seed=5) == 1
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is untouched
    sanity.randomize_group(b, "net.2", seed=5)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])  # same seed, same weights
        assert torch.equal(v, before[k]) != k.startswith("net.2.")  # only the group changed
    with pytest.raises(ParamError, match=r"^groups: 'net.9' is not a submodule"):
        sanity.randomize_group(a, "net.9")
    with pytest.raises(ParamError, match=r"^groups: 'net.1' has no layer with parameters"):
        sanity.randomize_group(a, "net.1")


def test_bad_arguments_name_themselves():
    m, x = _tiny_model(), _tiny_images()
    groups = ["net.6", "net.2", "net.0"]
    with pytest.raises(ParamError, match=r"^mode: 'bottom_up' is not allowed \(one of cascading, independent\)"):
        sanity.randomization_test(m, x, ["saliency"], groups=groups, mode="bottom_up")
    with pytest.raises(ParamError, match=r"^max_depth: 4 is not allowed \(an integer in \[0, 3\]"):
        sanity.randomization_test(m, x, ["saliency"], groups=groups, max_depth=4)
    with pytest.raises(ParamError, match=r"^methods: 'sal' is not a known method"):
        sanity.randomization_test(m, x, ["sal"], groups=groups)
    with pytest.raises(ParamError, match=r"^groups: 'net.x' is not a submodule"):
        sanity.randomization_test(m, x, ["saliency"], groups=["net.x"])
    with pytest.raises(ParamError, match=r"^confidence: 1.5 is not allowed"):
        sanity.summarize(sanity.randomization_test(m, x, ["saliency"], groups=groups, max_depth=0), confidence=1.5)


@pytest.mark.slow
def test_depth_zero_is_the_original_map_and_the_callers_model_is_untouched(model, samples):
    x = samples["chelsea"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table, maps = sanity.randomization_test(model, x, ["saliency", "guided_backprop"], max_depth=1, return_maps=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    from deepsaliency import methods_extra
    from deepsaliency.attribution import attribute, reduce_map

    target = model(x).argmax(-1)
    sal = attribute(model, x, "saliency", target=target)
    gbp = methods_extra.guided_backprop(model, x, target)
    assert torch.equal(maps[("saliency", 0)][1], reduce_map(sal, "saliency"))
    assert torch.equal(maps[("guided_backprop", 0)][0], gbp)
    zero = table[table.depth == 0]
    np.testing.assert_allclose(zero[list(sanity.SANITY_METRICS)].to_numpy(dtype=float), 1.0, atol=1e-12)
    assert set(zero.group) == {"original"}
    one = table[(table.depth == 1) & (table.method == "saliency")]
    assert one.group.item() == "net.classifier" and one.spearman_abs.item() < 0.9
    assert not torch.equal(maps[("saliency", 1)][1], maps[("saliency", 0)][1])


@pytest.mark.slow  # 3 images × 3 methods × 4 depths, IG with 8 steps: 3 min on the shared 2 CPU cores
def test_adebayo_guided_backprop_ignores_top_layer_randomisation_gradients_do_not(model, samples):
    """Adebayo et al. 2018, Fig. 2: Guided Backprop stays close under cascading randomisation from the logits,
    the gradient and Integrated Gradients decorrelate. On the unpatched Captum GuidedBackprop (= the gradient
    on ReLU6, see test_methods_extra) this test fails."""
    names = sorted(samples)
    x = torch.cat([samples[n] for n in names])
    methods = {"saliency": {"abs": False}, "integrated_gradients": {"n_steps": 8}, "guided_backprop": {}}
    table = sanity.randomization_test(model, x, methods, max_depth=3, images=names)
    summary = sanity.summarize(table)
    print(
        summary[
            [
                "method",
                "depth",
                "group",
                "spearman_abs",
                "spearman_abs_lo",
                "spearman_abs_hi",
                "spearman_signed",
                "ssim",
            ]
        ]
        .round(3)
        .to_string()
    )
    top = table[table.depth.between(1, 3)]
    gbp = top[top.method == "guided_backprop"]
    assert (gbp.spearman_abs > 0.9).all() and (gbp.spearman_signed > 0.9).all()
    for method in ("saliency", "integrated_gradients"):
        part = top[top.method == method]
        assert part.groupby("depth").spearman_abs.mean().max() < 0.8
        assert (part.spearman_signed.abs() < 0.5).all()
        # per image and depth, Guided Backprop is the more similar one
        merged = part.merge(gbp, on=["depth", "image"], suffixes=("", "_gbp"))
        assert (merged.spearman_abs_gbp > merged.spearman_abs + 0.1).all()


def _quantus_scores(model: Model, x: torch.Tensor, target: torch.Tensor, a_batch: np.ndarray, order: str, seed: int):
    quantus = pytest.importorskip("quantus")

    def explain_func(model, inputs, targets, **kwargs):
        _, red = sanity._explain(model, torch.as_tensor(inputs), "saliency", torch.as_tensor(targets), {})
        return red[:, None].numpy()

    metric = quantus.MPRT(
        similarity_func=quantus.similarity_func.correlation_spearman,
        layer_order=order,
        seed=seed,
        abs=True,
        normalise=True,
        disable_warnings=True,
        display_progressbar=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=target.numpy(),
            a_batch=a_batch,
            explain_func=explain_func,
            explain_func_kwargs={},
            device="cpu",
            channel_first=True,
        )


@pytest.mark.parametrize("mode,order", [("cascading", "top_down"), ("independent", "independent")])
def test_spearman_matches_quantus_mprt_on_the_same_maps(mode, order):
    m, x = _tiny_model(), _tiny_images()
    with torch.no_grad():
        target = m(x).argmax(-1)
    groups = ["net.6", "net.2", "net.0"]
    table, maps = sanity.randomization_test(
        m, x, ["saliency"], target=target, mode=mode, groups=groups, seed=1, return_maps=True
    )
    # Quantus seeds torch with seed + 1 before each layer: its seed 0 is ours 1.
    scores = _quantus_scores(m, x, target, maps[("saliency", 0)][1][:, None].numpy(), order, seed=0)
    assert set(scores) == {"original", *groups}
    np.testing.assert_allclose(scores["original"], table[table.depth == 0].spearman_abs, atol=1e-12)
    for depth, group in enumerate(groups, start=1):
        ours = table[table.depth == depth]
        assert (ours.group == group).all()
        np.testing.assert_allclose(scores[group], ours.spearman_abs, rtol=1e-9, atol=1e-12)
    assert table[table.depth > 0].spearman_abs.min() < 0.9  # the randomisation did change the maps


def test_independent_randomises_one_group_at_a_time():
    m, x = _tiny_model(), _tiny_images()
    groups = ["net.6", "net.2", "net.0"]
    _, cas = sanity.randomization_test(m, x, ["saliency"], mode="cascading", groups=groups, return_maps=True)
    _, ind = sanity.randomization_test(m, x, ["saliency"], mode="independent", groups=groups, return_maps=True)
    assert torch.equal(cas[("saliency", 1)][1], ind[("saliency", 1)][1])  # the first step is the same
    assert not torch.equal(cas[("saliency", 2)][1], ind[("saliency", 2)][1])  # then only one group is random
    # independent depth 2 = a fresh copy with only net.2 re-initialised
    import copy

    ref = copy.deepcopy(m)
    sanity.randomize_group(ref, "net.2", seed=0)
    target = m(x).argmax(-1)
    expected = sanity._explain(ref, x, "saliency", target, {})[1]
    assert torch.equal(ind[("saliency", 2)][1], expected)


def test_summarize_gives_a_student_t_interval_over_images():
    m, x = _tiny_model(), _tiny_images()
    table = sanity.randomization_test(m, x, ["saliency"], groups=["net.6", "net.2"])
    summary = sanity.summarize(table, confidence=0.9)
    row = summary[summary.depth == 2].iloc[0]
    values = table[table.depth == 2].ssim.tolist()
    half = scipy.stats.t.ppf(0.95, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    assert row.n == 4 and row.group == "net.2"
    assert row.ssim == pytest.approx(statistics.fmean(values))
    assert (row.ssim_lo, row.ssim_hi) == pytest.approx((row.ssim - half, row.ssim + half))
    zero = summary[summary.depth == 0].iloc[0]
    # no spread: the interval collapses to the mean (scipy's ρ of identical maps is 1 up to rounding), never NaN
    assert zero.spearman_abs_lo == zero.spearman_abs_hi == pytest.approx(1.0, abs=1e-12)
    assert np.isfinite(summary.select_dtypes("number").to_numpy()).all()
    los, his = summary.filter(like="_lo").to_numpy(), summary.filter(like="_hi").to_numpy()
    assert (los >= -1).all() and (his <= 1).all() and (los <= his).all()


# --- the sanity stage (stages/sanity.py) ---

ROOT = Path(__file__).resolve().parents[1]


def _stage_module():
    spec = importlib.util.spec_from_file_location("sanity_stage", ROOT / "stages" / "sanity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_stage_depth_zero_is_the_explain_stages_map_exactly(model, samples):
    from deepsaliency.attribution import explain_images
    from deepsaliency.experiments import method_kwargs
    from deepsaliency.params import load_params

    stage = _stage_module()
    params = load_params(ROOT / "params.yaml")
    params["sanity"] = {
        "methods": ["saliency", "gradcam", "deeplift"],
        "variants": ["cascading", "independent"],
        "max_depth": 2,
        "seed": 0,
    }
    stems = ["chelsea", "rocket"]
    x = torch.cat([samples[s] for s in stems])
    with torch.no_grad():
        targets = model(x).argmax(-1).tolist()
    table, maps = stage.run_sanity(model, x, stems, targets, params)
    for method in params["sanity"]["methods"]:
        # what stages/explain.py writes to data/explanations/<method>/<stem>.npz
        explained = explain_images(model, x, method, stems, targets, **method_kwargs(params, method, model))
        for (_, reference), stem in zip(explained, stems, strict=True):
            for variant in ("cascading", "independent"):
                assert np.array_equal(maps[(variant, method, stem, 0)], reference.numpy())
                assert not np.array_equal(maps[(variant, method, stem, 1)], reference.numpy())
    assert list(table.columns) == ["image", "method", "variant", "depth", "layer", *sanity.SANITY_METRICS]
    assert len(table) == 2 * 3 * 3 * 2  # variants × methods × depths × images
    zero = table[table.depth == 0]
    np.testing.assert_allclose(zero[list(sanity.SANITY_METRICS)].to_numpy(dtype=float), 1.0, atol=1e-12)
    # depth 1 is the same model in both variants; depth 2 is not (only net.conv_head random vs both groups)
    one = table[table.depth == 1].pivot_table(index=["method", "image"], columns="variant", values="spearman_abs")
    np.testing.assert_array_equal(one.cascading, one.independent)
    assert set(table[table.depth == 2].layer) == {"net.conv_head"}


def _project(tmp_path: Path, prepared: Path, **sections) -> Path:
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    (tmp_path / "data").mkdir()
    shutil.copytree(prepared, tmp_path / "data" / "prepared")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update(sections)
    params["metrics"]["bootstrap"]["n_resamples"] = 200
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


@pytest.mark.slow
def test_sanity_stage_end_to_end_in_a_project_copy(tmp_path, prepared, stage_in_process):
    section = {"methods": ["saliency", "guided_backprop"], "variants": ["cascading"], "max_depth": 2, "seed": 0}
    project = _project(tmp_path, prepared, sanity=section)
    proc = stage_in_process(project, "stages/sanity.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    per_image = pd.read_csv(project / "reports/sanity/per_image.csv")
    stems = pd.read_csv(prepared / "manifest.csv").stem.tolist()
    assert len(per_image) == len(stems) * 2 * 3 and set(per_image.image) == set(stems)
    summary = pd.read_csv(project / "reports/sanity/summary.csv")
    assert list(summary.columns) == ["method", "variant", "depth", "layer", "metric", "mean", "ci_low", "ci_high", "n"]
    row = summary[(summary.method == "saliency") & (summary.depth == 2) & (summary.metric == "ssim")].iloc[0]
    values = per_image[(per_image.method == "saliency") & (per_image.depth == 2)].ssim
    assert row["mean"] == pytest.approx(values.mean(), abs=1e-5) and row.n == len(stems)
    assert row.ci_low <= row["mean"] <= row.ci_high
    metrics = json.loads((project / "reports/sanity.json").read_text())
    assert metrics["saliency"]["cascading"]["depth"] == 2
    assert metrics["saliency"]["cascading"]["ssim"]["mean"] == pytest.approx(row["mean"], abs=1e-5)
    # Adebayo et al. 2018: after the logits and conv_head, the gradient decorrelates, Guided Backprop much less
    deep = {m: metrics[m]["cascading"]["spearman_abs"]["mean"] for m in ("saliency", "guided_backprop")}
    assert deep["guided_backprop"] > deep["saliency"] + 0.1
    curves = pd.read_csv(project / "reports/plots/sanity_curves.csv")
    assert len(curves) == 2 * 3 and curves[curves.depth == 0].spearman_abs.tolist() == pytest.approx([1.0, 1.0])
    assert (project / "reports/sanity/sanity.png").stat().st_size > 10_000


def test_sanity_stage_rejects_a_depth_beyond_the_models_layer_groups(tmp_path, prepared, stage_in_process):
    section = {"methods": ["saliency"], "variants": ["cascading"], "max_depth": 11, "seed": 0}
    proc = stage_in_process(_project(tmp_path, prepared, sanity=section), "stages/sanity.py")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "error: sanity.max_depth: 11 is not allowed (null or an integer in [0, 10], the model's layer groups)"
    ]
    assert not (tmp_path / "reports").exists()


def test_plot_sanity_draws_methods_by_depth_and_refuses_a_ragged_row():
    from deepsaliency.plots.sanity import plot_sanity

    rng = np.random.default_rng(0)
    maps = {m: [rng.random((8, 8)) for _ in range(3)] for m in ("saliency", "gradcam")}
    layers = ["original", "net.classifier", "net.conv_head"]
    fig = plot_sanity(maps, layers, rng.random((8, 8, 3)))
    assert len(fig.axes) == 2 * 4  # rows = methods, columns = the image and one per depth
    assert [ax.get_title() for ax in fig.axes[:4]] == ["image", "original", "classifier", "conv_head"]
    shown = fig.axes[1].images[0].get_array()
    assert shown.max() == pytest.approx(1.0) and shown.min() >= 0  # each map on its own [0, 1] scale
    with pytest.raises(ParamError, match=r"^maps: 'gradcam' has 2 maps, but layers has 3 entries"):
        plot_sanity({"gradcam": maps["gradcam"][:2]}, layers)
