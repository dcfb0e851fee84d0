"""Figures: colour scales, layouts and the numbers written on them (no model needed)."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from deepsaliency import plots
from deepsaliency.errors import AttributionError, DeepSaliencyError, ParamError

RNG = np.random.default_rng(0)
IMG = (RNG.random((32, 32, 3)) * 255).astype(np.uint8)


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes]


def test_plot_comparison_signed_map_is_centred_at_zero():
    attr = RNG.normal(size=(3, 32, 32)).astype(np.float32)
    attr[0, 0, 0] = 9.0  # asymmetric range: the norm must still be symmetric about 0
    fig = plots.plot_comparison(IMG, attr, colormap="seismic", title_original="x", title_explanation="IG")
    assert isinstance(fig, Figure)
    axes = image_axes(fig)
    assert len(axes) == 2
    assert [ax.get_title() for ax in axes] == ["x", "IG"]
    norm = axes[1].images[0].norm
    assert isinstance(norm, TwoSlopeNorm)
    assert norm.vcenter == 0.0 and norm.vmin == pytest.approx(-norm.vmax)
    summed = attr.astype(np.float64).sum(axis=0)
    assert norm.vmax == pytest.approx(np.abs(summed).max())
    np.testing.assert_allclose(axes[1].images[0].get_array(), summed)  # channels summed, sign kept
    assert len(fig.axes) == 3  # the two panels and a colour bar


def test_plot_comparison_non_negative_map_on_sequential_scale_starts_at_zero():
    smap = RNG.random((32, 32)) + 0.5
    fig = plots.plot_comparison(IMG, smap, colormap="inferno")
    norm = image_axes(fig)[1].images[0].norm
    assert not isinstance(norm, TwoSlopeNorm)
    assert norm.vmin == 0.0 and norm.vmax == pytest.approx(smap.max())
    # the seed's default diverging colour map keeps 0 at its centre even for a non-negative map
    norm = image_axes(plots.plot_comparison(IMG, smap))[1].images[0].norm
    assert isinstance(norm, TwoSlopeNorm) and norm.vcenter == 0.0


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(AttributionError, match="NaN"):
        plots.plot_comparison(IMG, np.full((32, 32), np.nan))
    with pytest.raises(DeepSaliencyError, match="shape"):
        plots.plot_comparison(np.zeros((5, 32, 32, 2)), np.zeros((32, 32)))
    with pytest.raises(ParamError, match="colormap"):
        plots.plot_comparison(IMG, np.zeros((32, 32)), colormap="no-such-map")


def test_as_image_accepts_every_layout():
    chw = IMG.transpose(2, 0, 1).astype(np.float32) / 255
    for a in (IMG, chw, chw[None], IMG.astype(np.float64) / 255):
        np.testing.assert_allclose(plots.as_image(a), IMG / 255, atol=1e-6)


def test_plot_methods_rows_and_scales():
    methods = ["saliency", "rise", "gradcam"]
    attrs = {m: RNG.normal(size=(3 if m == "saliency" else 1, 32, 32)) for m in methods}
    maps = {m: np.abs(a).sum(0) for m, a in attrs.items()}
    fig = plots.plot_methods(IMG, maps, attrs, map_cmap="inferno", signed_cmap="seismic", title="t")
    axes = image_axes(fig)
    assert len(axes) == 1 + 2 * len(methods)  # the image, then a map and an attribution per method
    seq = [ax.images[0] for ax in axes[1:1 + len(methods)]]
    signed = [ax.images[0] for ax in axes[1 + len(methods):]]
    assert all(im.cmap.name == "inferno" and im.norm.vmin == 0 and im.norm.vmax == 1 for im in seq)
    assert all(isinstance(im.norm, TwoSlopeNorm) and im.norm.vcenter == 0 and im.cmap.name == "seismic" for im in signed)
    assert all(im.get_array().min() < 0 < im.get_array().max() for im in signed)  # the sign reaches the picture
    titles = [ax.get_title() for ax in axes[1:1 + len(methods)]]
    assert titles == ["saliency", "rise (min–max)", "gradcam"]  # RISE is shown min–max by default, and says so
    rise = seq[1].get_array()
    assert rise.min() == 0 and rise.max() == 1
    colorbars = [ax for ax in fig.axes if not ax.images and ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 2


def test_overlay_draws_map_over_the_image():
    fig = plots.plot_methods(IMG, {"rise": RNG.random((32, 32))}, overlay=True, overlay_alpha=0.4)
    ax = image_axes(fig)[1]
    assert len(ax.images) == 2 and ax.images[1].get_alpha() == 0.4


def test_scaled_clips_outliers_by_percentile():
    m = np.full((100, 100), 1.0)
    m[0, 0] = 1000.0  # one extreme pixel
    assert plots.scaled(m, signed=False, percentile=100)[5, 5] == pytest.approx(1e-3)
    s = plots.scaled(m, signed=False, percentile=99.5)
    assert s[5, 5] == pytest.approx(1.0) and s.max() == 1.0
    signed = plots.scaled(-m, signed=True, percentile=99.5)
    assert signed.min() == -1.0
    assert not plots.scaled(np.zeros((4, 4)), signed=False).any()


def test_min_max_removes_a_constant_offset():
    m = 0.5 + 0.01 * np.arange(16.0).reshape(4, 4)  # RISE-like: a large offset, small spread
    from_zero = plots.scaled(m, signed=False)
    assert from_zero.min() > 0.7  # nearly one colour
    mm = plots.scaled(m, signed=False, min_max=True)
    assert mm.min() == 0 and mm.max() == 1
    np.testing.assert_allclose(mm, (m - m.min()) / (m.max() - m.min()))
    assert plots.scaled(m - 1, signed=True, min_max=True).min() < 0  # never applied to signed maps


@pytest.mark.parametrize("linf, gain", [(3 / 255, 20), (8 / 255, 10), (0.3, 1), (0.001, 500), (0.0, 1)])
def test_nice_gain(linf, gain):
    assert plots.nice_gain(linf) == gain
    if linf:
        assert gain * linf <= 0.5 or gain == 1


def attack_rows(n=2, with_target=True):
    rows = []
    for i in range(n):
        x = RNG.random((3, 32, 32)).astype(np.float32)
        delta = np.zeros_like(x)
        delta[0, 3, 3] = 3 / 255
        rows.append(plots.AttackRow(
            name=f"img{i}", x=x, x_adv=x + delta, orig_map=RNG.random((32, 32)), adv_map=RNG.random((32, 32)),
            target_map=RNG.random((32, 32)) if with_target else None, label="cat", prob=0.5, label_adv="dog",
            prob_adv=0.25, target_name="other", r_orig_target=0.1, r_adv_target=0.9))
    return rows


def test_plot_attack_layout_and_scale_annotation():
    fig = plots.plot_attack(attack_rows(2), "saliency", title="attack")
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(axes) == 12  # 2 rows × (x, x_adv, perturbation, original, adversarial, target)
    assert sum(bool(ax.images) for ax in axes) == 12
    t = texts(fig)
    assert sum("L∞ = 3/255" in s for s in t) == 2
    assert sum(s.startswith("perturbation ×") for s in t) == 2
    assert any("r to target = 0.90" in s for s in t) and any("r to target = 0.10" in s for s in t)
    # the perturbation panel shows 0.5 + gain·delta: gain 20 turns 3/255 into ~0.235 above grey
    pert = axes[2].images[0].get_array()
    assert pert[3, 3, 0] == pytest.approx(0.5 + 20 * 3 / 255, abs=1e-5)
    assert pert[0, 0, 0] == pytest.approx(0.5)


def test_plot_attack_without_target_leaves_the_cell_empty():
    fig = plots.plot_attack(attack_rows(1, with_target=False), "pgd")
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert not axes[5].images and "no target" in axes[5].get_title()


def test_transfer_matrix_writes_every_value():
    mat = pd.DataFrame([[0.91, 0.2, np.nan], [0.1, 0.55, 0.3]], index=["saliency", "rise"], columns=["saliency", "rise", "gradcam"])
    fig = plots.plot_transfer_matrix(mat)
    ax = fig.axes[0]
    cells = sorted(t.get_text() for t in ax.texts)
    assert cells == sorted(["0.91", "0.20", "n/a", "0.10", "0.55", "0.30"])
    assert len(ax.patches) == 2  # the two attacks on their own method are outlined
    assert [t.get_text() for t in ax.get_xticklabels()] == ["saliency", "rise", "gradcam"]


def test_plot_curves_legend_reports_the_auc():
    frac = np.linspace(0, 1, 11)
    rows = [{"method": m, "image": img, "fraction": f, "prob": p}
            for img in ("a", "b") for m, probs in (("saliency", 1 - frac), ("random", np.ones_like(frac)))
            for f, p in zip(frac, probs)]
    fig = plots.plot_curves(pd.DataFrame(rows), "deletion")
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 2 and all(len(ax.lines) == 2 for ax in panels)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["saliency  (AUC 0.500)", "random  (AUC 1.000)"]


def test_plot_attack_losses_marks_a_missing_loss():
    steps = np.arange(5)
    with_expl = pd.DataFrame({"step": steps, "image": "a", "expl_loss": 10.0 ** -steps, "output_loss": steps * 0.1, "beta": 10.0})
    pgd = pd.DataFrame({"step": steps, "image": "a", "expl_loss": np.nan, "output_loss": steps * 0.2, "beta": np.nan})
    fig = plots.plot_attack_losses({"saliency": with_expl, "pgd": pgd})
    grid = [ax for ax in fig.axes]
    assert len(grid) == 6  # 2 attacks × (explanation loss, output loss, β)
    assert grid[0].get_yscale() == "log"
    assert "no explanation loss" in [t.get_text() for t in grid[3].texts]


def test_plot_params_defaults_and_errors():
    assert plots.plot_params(None) == plots.PLOT_DEFAULTS
    assert plots.plot_params({"map_cmap": "hot"})["map_cmap"] == "hot"
    with pytest.raises(ParamError, match=r"^plots\.signed_cmap: 'nope' is not allowed"):
        plots.plot_params({"signed_cmap": "nope"})
    with pytest.raises(ParamError, match=r"^plots\.dpi"):
        plots.plot_params({"dpi": True})
    with pytest.raises(ParamError, match=r"^plots\.format"):
        plots.plot_params({"format": "svg"})
    with pytest.raises(ParamError, match=r"^plots\.colour: unknown key"):
        plots.plot_params({"colour": "red"})


def test_saved_png_is_byte_reproducible(tmp_path):
    smap = RNG.random((32, 32))
    a = plots.save_figure(plots.plot_comparison(IMG, smap), tmp_path / "a.png")
    b = plots.save_figure(plots.plot_comparison(IMG, smap), tmp_path / "b.png")
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert a.read_bytes() == b.read_bytes()
