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
    seq = [ax.images[0] for ax in axes[1 : 1 + len(methods)]]
    signed = [ax.images[0] for ax in axes[1 + len(methods) :]]
    assert all(im.cmap.name == "inferno" and im.norm.vmin == 0 and im.norm.vmax == 1 for im in seq)
    assert all(
        isinstance(im.norm, TwoSlopeNorm) and im.norm.vcenter == 0 and im.cmap.name == "seismic" for im in signed
    )
    assert all(im.get_array().min() < 0 < im.get_array().max() for im in signed)  # the sign reaches the picture
    titles = [ax.get_title() for ax in axes[1 : 1 + len(methods)]]
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
        rows.append(
            plots.AttackRow(
                name=f"img{i}",
                x=x,
                x_adv=x + delta,
                orig_map=RNG.random((32, 32)),
                adv_map=RNG.random((32, 32)),
                target_map=RNG.random((32, 32)) if with_target else None,
                label="cat",
                prob=0.5,
                label_adv="dog",
                prob_adv=0.25,
                target_name="other",
                r_orig_target=0.1,
                r_adv_target=0.9,
            )
        )
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
    mat = pd.DataFrame(
        [[0.91, 0.2, np.nan], [0.1, 0.55, 0.3]], index=["saliency", "rise"], columns=["saliency", "rise", "gradcam"]
    )
    fig = plots.plot_transfer_matrix(mat)
    ax = fig.axes[0]
    cells = sorted(t.get_text() for t in ax.texts)
    assert cells == sorted(["0.91", "0.20", "n/a", "0.10", "0.55", "0.30"])
    assert len(ax.patches) == 2  # the two attacks on their own method are outlined
    assert [t.get_text() for t in ax.get_xticklabels()] == ["saliency", "rise", "gradcam"]


def test_plot_curves_legend_reports_the_auc():
    frac = np.linspace(0, 1, 11)
    rows = [
        {"method": m, "image": img, "fraction": f, "prob": p}
        for img in ("a", "b")
        for m, probs in (("saliency", 1 - frac), ("random", np.ones_like(frac)))
        for f, p in zip(frac, probs, strict=True)
    ]
    fig = plots.plot_curves(pd.DataFrame(rows), "deletion")
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 2 and all(len(ax.lines) == 2 for ax in panels)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["saliency  (AUC 0.500)", "random  (AUC 1.000)"]


def test_plot_attack_losses_marks_a_missing_loss():
    steps = np.arange(5)
    with_expl = pd.DataFrame(
        {"step": steps, "image": "a", "expl_loss": 10.0**-steps, "output_loss": steps * 0.1, "beta": 10.0}
    )
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


def manipulability_table():
    """Two attacked methods at three budgets, given out of ε order; RISE converges on few images at ε = 2."""
    rows = [
        ("saliency", 8, 3, 0.80, 0.74, 0.86, 1.0), ("saliency", 2, 3, 0.40, 0.31, 0.52, 1.0),
        ("saliency", 4, 3, 0.65, 0.55, 0.70, 1.0), ("rise", 2, 3, 0.20, 0.05, 0.33, 1 / 3),
        ("rise", 4, 3, 0.35, 0.20, 0.41, 2 / 3), ("rise", 8, 2, 0.50, 0.45, 0.62, 1.0),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "eps", "n", "mean", "ci_low", "ci_high", "converged_rate"])


def test_plot_manipulability_one_line_and_band_per_method():
    table = manipulability_table()
    fig = plots.plot_manipulability(table, metric_label="Pearson r(adv, target)")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["saliency", "rise"]
    for line, method in zip(ax.lines, ["saliency", "rise"], strict=True):
        want = table[table["method"] == method].sort_values("eps")
        np.testing.assert_array_equal(line.get_xdata(), want["eps"])
        np.testing.assert_allclose(line.get_ydata(), want["mean"])
        assert line.get_marker() == "o"
    assert ax.lines[0].get_linestyle() == "-" and ax.lines[1].get_linestyle() == "--"  # RISE: 1/3 converged at ε=2
    bands = ax.collections
    assert len(bands) == 2
    for band, method in zip(bands, ["saliency", "rise"], strict=True):
        want = table[table["method"] == method]
        verts = band.get_paths()[0].vertices
        assert verts[:, 0].min() == 2 and verts[:, 0].max() == 8
        assert verts[:, 1].min() == pytest.approx(want["ci_low"].min())
        assert verts[:, 1].max() == pytest.approx(want["ci_high"].max())
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["saliency  (n = 3)", "rise  (n = 2–3) (not converged)"]
    assert ax.get_xlabel() == "L∞ budget ε (/255)" and ax.get_ylabel() == "Pearson r(adv, target)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "4", "8"]


def test_plot_manipulability_one_budget_gives_points_with_error_bars():
    table = manipulability_table()
    one = table[table["eps"] == 8].drop(columns="converged_rate")
    fig = plots.plot_manipulability(one)
    ax = fig.axes[0]
    assert len(ax.containers) == 2 and not [
        c for c in ax.collections if type(c).__name__ == "FillBetweenPolyCollection"
    ]
    xs = []
    for bars, (_, row) in zip(ax.containers, one.iterrows(), strict=True):
        point, _caps, (segments,) = bars
        x, y = point.get_xdata()[0], point.get_ydata()[0]
        xs.append(x)
        assert y == pytest.approx(row["mean"]) and abs(x - 8) < 0.5
        ((lo, hi),) = [sorted(seg[:, 1]) for seg in segments.get_segments()]
        assert (lo, hi) == (pytest.approx(row["ci_low"]), pytest.approx(row["ci_high"]))
    assert xs[0] != xs[1]  # spread sideways so the bars do not cover each other
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["saliency  (n = 3)", "rise  (n = 2)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8"]


def test_plot_manipulability_rejects_bad_tables():
    table = manipulability_table()
    with pytest.raises(DeepSaliencyError, match=r"^plot_manipulability: table: columns .* lack \['ci_high'\]"):
        plots.plot_manipulability(table.drop(columns="ci_high"))
    with pytest.raises(DeepSaliencyError, match=r"several rows for method 'rise' at eps=4"):
        plots.plot_manipulability(pd.concat([table, table.iloc[[4]]]))
    bad = table.copy()
    bad.loc[0, "mean"] = 0.9  # above its ci_high 0.86
    with pytest.raises(DeepSaliencyError, match=r"'saliency' at eps=8 has mean 0.9 outside \[ci_low, ci_high\]"):
        plots.plot_manipulability(bad)
    with pytest.raises(DeepSaliencyError, match="empty"):
        plots.plot_manipulability(table.iloc[:0])


def test_every_figure_takes_its_sizes_from_the_package_style():
    """A caller's rcParams (here: everything 30 pt) reach no figure, and the caller gets them back unchanged."""
    import io

    import matplotlib
    from matplotlib.text import Text

    big = {k: 30 for k in ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize", "ytick.labelsize",
                           "legend.fontsize", "legend.title_fontsize", "figure.titlesize")}  # fmt: skip
    frac = np.linspace(0, 1, 5)
    curves = pd.DataFrame({"method": "saliency", "image": "a", "fraction": frac, "prob": 1 - frac})
    losses = pd.DataFrame({"step": np.arange(5), "image": "a", "expl_loss": 10.0 ** -np.arange(5), "output_loss": 0.1})
    x, x_adv = IMG / 255, np.clip(IMG / 255 + 2 / 255, 0, 1)
    maps = {"saliency": RNG.random((32, 32)), "rise": RNG.random((32, 32))}
    with matplotlib.rc_context(big):
        figs = {
            "comparison": plots.plot_comparison(IMG, RNG.normal(size=(32, 32))),
            "methods": plots.plot_methods(IMG, maps, {"saliency": RNG.normal(size=(3, 32, 32))}, title="t"),
            "attack": plots.plot_attack(attack_rows(1), "saliency", title="t"),
            "transfer": plots.plot_attack_transfer([("a", x, x_adv)], [maps], [maps], title="t"),
            "curves": plots.plot_curves(curves),
            "losses": plots.plot_attack_losses({"saliency": losses}),
            "matrix": plots.plot_transfer_matrix(pd.DataFrame([[0.5]], index=["rise"], columns=["rise"])),
            "manipulability": plots.plot_manipulability(manipulability_table()),
        }
        for fig in figs.values():
            fig.savefig(io.BytesIO(), format="png")  # draws: tick labels get their text
        assert {k: matplotlib.rcParams[k] for k in big} == big
    for name, fig in figs.items():
        sizes = {t.get_fontsize() for t in fig.findobj(Text) if t.get_text() and t.get_visible()}
        assert sizes and sizes <= {7, 8, 9, 11, 12}, (name, sizes)


def test_every_method_has_its_own_fixed_colour():
    """A figure with every method (the manipulability curves of all nine attacked methods) never gives two
    methods one colour; the fallback colour cycle wraps after ten."""
    from matplotlib.colors import to_hex

    from deepsaliency.methods import METHODS
    from deepsaliency.plots.style import METHOD_COLORS

    assert set(METHODS) <= set(METHOD_COLORS)
    colours = [to_hex(METHOD_COLORS[m]) for m in [*METHODS, "random"]]
    assert len(set(colours)) == len(colours)
