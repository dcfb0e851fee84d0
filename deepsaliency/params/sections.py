"""The pipeline's sections of ``params.yaml`` (model, data, metrics, figures): one pydantic model each.

A field's ``description`` is the README's Parameters table text for the key; its default is THE default
of the parameter (params.yaml must equal the defaults, and the library functions the sections feed take
their defaults from here). The methods' sections are in :mod:`~deepsaliency.params.explainers`, the
attacks' and ``compute`` in :mod:`~deepsaliency.params.attack`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..methods import METHODS
from .types import (
    Colormap,
    Names,
    NonEmpty,
    NonNegInt,
    OddInt,
    OpenUnit,
    PosInt,
    PosNum,
    Rate,
    Section,
    Words,
)

MethodNames = Annotated[list[str], Names(METHODS)]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda|cuda:\d+)$"), Words("auto, cpu, cuda or cuda:N")]


class Model(Section):
    """The classifier (``deepsaliency.models.load_model``)."""

    name: NonEmpty = Field(
        default="efficientnet_lite0",
        description="the embedded model; `resnet50` or any torchvision/timm classifier name with `model.checkpoint`",
    )
    checkpoint: NonEmpty | None = Field(
        default=None,
        description="a local state-dict file (loaded with `weights_only=True`); for `resnet50` without it "
        "torchvision's `IMAGENET1K_V2` is tried (needs a network)",
    )
    device: Device = Field(default="auto", description="`auto` = CUDA when present, else the CPU")
    input_size: Annotated[int, Field(ge=8, le=1024)] = Field(
        default=224, description="images are prepared at this square size"
    )


class Sample(Section):
    """A seeded subset of the prepared images (``deepsaliency.data.prepare_images``)."""

    n: PosInt | None = Field(default=None, description="keep at most `n` images")
    per_class: PosInt | None = Field(default=None, description="at most this many per true class (needs labels)")
    only_correct: bool = Field(
        default=False, description="keep only images the model classifies correctly (needs labels), as most studies do"
    )
    seed: NonNegInt = Field(
        default=0, description="seed of the order candidates are drawn in: the same seed, the same subset"
    )


class Prepare(Section):
    """The input images, resized and classified by the prepare stage."""

    images: NonEmpty = Field(
        default="data/images",
        description="the input folder: flat, or ImageNet class folders (see *Input images* below)",
    )
    resize: Literal["stretch", "center_crop"] = Field(
        default="stretch", description="`stretch` or `center_crop` (shorter side to `input_size`, then the centre)"
    )
    labels: NonEmpty | None = Field(
        default=None,
        description="a CSV with columns `file,label` (`file` relative to `prepare.images`; `label` = class index, "
        "WordNet id or class name); "
        "adds `true_label` and `correct` to the manifest",
        json_schema_extra={"null": "null (no labels file)"},
    )
    sample: Sample = Field(
        default=Sample(), description="a seeded subset of the images (all nulls/false = every image)"
    )


class Rise(Section):
    """RISE (Petsiuk et al. 2018): the masks and their batching (``deepsaliency.rise``)."""

    N: PosInt = Field(default=500, description="number of random masks (the RISE paper uses 4000)")
    s: PosInt = Field(default=8, description="grid cells per side (≤ `input_size`)")
    p1: OpenUnit = Field(default=0.5, description="probability that a cell is kept")
    seed: NonNegInt = Field(default=0, description="seed of the masks")
    batch_size: Literal["auto"] | PosInt = Field(
        default=8,
        description="masked images per forward pass; `auto` measures the fastest (then not byte-reproducible)",
    )
    sampling: Literal["random", "sobol", "antithetic"] = Field(
        default="random",
        description="how the masks are drawn: `random` (i.i.d., the paper's), `antithetic` (pairs M, 1 − M) or "
        "`sobol` (those pairs from a scrambled Sobol' sequence); see Definitions and Performance",
    )


class Explain(Section):
    """Which methods the explain stages compute, and for which class."""

    methods: MethodNames = Field(
        default=list(METHODS), description="methods compared on `x_adv`, in the metrics and the report"
    )
    target: NonNegInt | None = Field(
        default=None,
        description="class to explain; `null` = the model's prediction",
        json_schema_extra={"null": "null (the model's prediction)"},
    )


class Bootstrap(Section):
    """Seeded bootstrap CIs (scipy.stats.bootstrap, BCa) of every mean in reports/metrics.json."""

    n_resamples: Annotated[int, Field(ge=100)] = Field(
        default=2000, description="bootstrap resamples of every 95 % confidence interval"
    )
    seed: NonNegInt = Field(default=0, description="seed of every interval (each draws from its own generator)")


class Metrics(Section):
    """The metrics stage: map similarity and the confidence intervals of every mean."""

    top_k: PosInt = Field(default=1000, description="pixels compared by the top-k intersection (Ghorbani et al. 2019)")
    bootstrap: Bootstrap = Field(default=Bootstrap(), description="95 % CI of every mean (scipy.stats.bootstrap, BCa)")


class Report(Section):
    """The leaderboard's ranking, computed by the metrics stage."""

    rank_eps: Annotated[float, Field(gt=0, le=255, allow_inf_nan=False)] | None = Field(
        default=None,
        description="budget (/255, one of `attack.eps`) the leaderboard ranks at; `null` = the largest. With two "
        "or more budgets methods are also ranked by the area under their r(adv, target)-vs-ε curve",
        json_schema_extra={"null": "null (the largest budget)"},
    )
    alpha: OpenUnit = Field(default=0.05, description="family-wise α of the paired Wilcoxon tests (Holm-corrected)")
    max_images: PosInt = Field(
        default=12,
        description="images drawn in the per-image figures (a seeded selection when there are more; the tables "
        "cover every image)",
    )


class Faithfulness(Section):
    """Deletion and insertion (Petsiuk et al. 2018), ``deepsaliency.metrics.faithfulness``."""

    step: PosInt = Field(default=1792, description="pixels changed per deletion/insertion step (Petsiuk et al. 2018)")
    substrate: Literal["mean", "zero", "blur"] = Field(
        default="mean", description="deleted pixels become the ImageNet mean colour, `zero` or `blur`"
    )
    blur_kernel: OddInt = Field(
        default=11,
        description="the blurred copy insertion starts from: the reference's `gkern(11, 5)` (see Definitions)",
    )
    blur_sigma: PosNum = Field(default=5.0, description="its σ (reference 5)")
    batch_size: PosInt = Field(default=16, description="images per forward pass")
    seed: NonNegInt = Field(default=0, description="seed of the random baseline map and tie-breaking")
    random_cell: PosInt = Field(default=1, description="block size of the random baseline map (1 = i.i.d. pixels)")
    adversarial: Literal["diagonal", "all", "none"] = Field(
        default="diagonal", description="maps scored on `x_adv`: the attacked method's own, `all`, or `none`"
    )


class Plots(Section):
    """Figures of the report (``deepsaliency.plots``)."""

    signed_cmap: Colormap = Field(default="seismic", description="colour map of signed attributions, centred at 0")
    map_cmap: Colormap = Field(default="inferno", description="colour map of non-negative maps")
    dpi: Annotated[int, Field(ge=30, le=600)] = Field(default=100, description="figure resolution")
    format: Literal["png"] = Field(default="png", description="figure format (the HTML report embeds PNG)")
    overlay: bool = Field(default=False, description="draw maps over a grey copy of the image")
    overlay_alpha: Rate = Field(default=0.6, description="opacity of the overlaid map")
    clip_percentile: Annotated[float, Field(ge=50, le=100, allow_inf_nan=False)] = Field(
        default=99.5, description="maps are shown ÷ this percentile of \\|map\\|"
    )
    min_max_methods: Annotated[list[str], Names(METHODS, min_length=0)] = Field(
        default=["rise"], description="maps shown from their minimum (RISE has a large constant offset)"
    )


class Sanity(Section):
    """Model-parameter randomisation (Adebayo et al. 2018), stage ``sanity``."""

    methods: MethodNames = Field(
        default=["saliency", "input_x_gradient", "guided_backprop", "deeplift", "gradcam"],
        description="methods re-explained on the randomised models (stage `sanity`; Adebayo et al. 2018); any "
        "`explain` method may be listed. Cost on the 3 sample images, 11 depths, 2 shared cores: the default "
        "1 min 33 s; with Grad-CAM++ 4 min 26 s; all methods but RISE ≈ 5 min per image",
    )
    variants: Annotated[list[str], Names(("cascading", "independent"))] = Field(
        default=["cascading"],
        description="`cascading` (from the logits down) and/or `independent` (one group at a time)",
    )
    max_depth: NonNegInt | None = Field(
        default=None,
        description="layer groups randomised, in [0, 10] for EfficientNet-Lite0 (classifier, conv_head, blocks 6 … 0, "
        "conv_stem); `null` = all; depth 0 is the original model, its maps equal the explain stage's exactly",
        json_schema_extra={"null": "null (every layer group)"},
    )
    seed: NonNegInt = Field(
        default=0, description="seed of the re-initialisation (torch's default init, seeded before each layer)"
    )


class Stability(Section):
    """Max-sensitivity and infidelity (Yeh et al. 2019, ``captum.metrics``), stage ``stability``."""

    methods: MethodNames = Field(
        default=["saliency", "input_x_gradient", "guided_backprop", "deeplift", "gradcam", "gradcam_plus_plus"],
        description="methods scored by max-sensitivity and infidelity (stage `stability`; Yeh et al. 2019, "
        "`captum.metrics`): 1 min 35 s on the 3 sample images (2 shared cores). Each method is re-run on "
        "`n_perturb_samples` copies, so IG, SmoothGrad, GradientSHAP, occlusion, LRP and RISE cost 8× their "
        "explain time and are left out by default",
    )
    radius: Rate = Field(default=0.02, description="L∞ radius of the perturbations in [0, 1] pixel units")
    n_perturb_samples: PosInt = Field(default=8, description="perturbations per image and metric")
    seed: NonNegInt = Field(default=0, description="seed of the perturbations")
    batch_size: PosInt = Field(default=8, description="perturbed copies per explanation call")
