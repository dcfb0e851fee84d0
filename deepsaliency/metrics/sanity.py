"""Model-parameter randomisation sanity check (Adebayo et al. 2018).

Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps",
NeurIPS 2018, https://arxiv.org/abs/1810.03292: an explanation that does not change when the
model's learned weights are replaced by random ones cannot be explaining what the model learned.

:func:`randomization_test` re-initialises the model's layer groups one after another, from the
logits down (``cascading``: groups 1..k random at depth k) or one at a time (``independent``:
only group k random at depth k), always on a deep copy — the caller's model is never touched —
and re-explains the same images with every method after each step. Depth 0 is the copy before
any randomisation, so its maps equal the original maps exactly.

Re-initialisation rule (the same as Quantus' ``get_random_layer_generator``, where Quantus'
``seed`` is ours − 1): every module of a group that has ``reset_parameters`` (Conv2d, Linear)
gets the default PyTorch initialisation, with the torch generator seeded to ``seed`` just before
each module. The generator is forked, so the caller's random state is unchanged.

Per method × depth × image the table holds, comparing the original map with the randomised one:

* ``spearman_abs`` — Spearman ρ of the non-negative 2-D maps (``reduce_map``'s rule, the |map|
  the rest of the project compares), :func:`deepsaliency.metrics.similarity.spearman`;
* ``spearman_signed`` — Spearman ρ of the signed maps (the attribution summed over channels,
  ``scipy.stats.spearmanr``; 0 when either is constant, as in ``similarity``);
* ``ssim`` — :func:`deepsaliency.metrics.similarity.ssim` of the non-negative maps (each scaled to
  [0, 1] by its maximum, as everywhere in the project).

Quantus' ``MPRT`` (``abs=True, normalise=True``, ``correlation_spearman``) on the same maps gives
the same ``spearman_abs`` (tests/test_sanity.py); its normalisation by the maximum does not change
ranks. :func:`summarize` adds Student-t confidence intervals over images.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import scipy.stats
import torch
from torch import nn

from ..errors import ParamError
from ..params import DEFAULTS as D  # the one default of each parameter: the params section's
from .similarity import _constant, spearman, ssim

#: Randomisation orders.
MODES = ("cascading", "independent")
#: Per-image metrics, in table order.
SANITY_METRICS = ("spearman_abs", "spearman_signed", "ssim")
_PATH_HINT = "a dotted path like 'net.blocks.6'"


def layer_groups(model: nn.Module) -> list[str]:
    """The layer groups of a timm EfficientNet, from the logits down, as dotted submodule paths.

    ``classifier``, ``conv_head``, each ``blocks[i]`` from the last to the first, ``conv_stem``
    (prefixed with ``net.`` for a :class:`deepsaliency.Model`). For the embedded EfficientNet-Lite0
    that is 10 groups: classifier, conv_head, blocks.6 … blocks.0, conv_stem.

    Raises:
        ParamError: the model is not a timm EfficientNet (name the groups yourself then).
    """
    prefix = "net." if hasattr(model, "net") else ""
    net = model.get_submodule(prefix[:-1]) if prefix else model
    if not all(hasattr(net, name) for name in ("classifier", "conv_head", "blocks", "conv_stem")):
        raise ParamError(
            f"groups: 'auto' needs a timm EfficientNet (classifier, conv_head, blocks, conv_stem); "
            f"{type(net).__name__} has none of those — pass groups=[dotted submodule paths, top first]"
        )
    n_blocks = len(list(net.get_submodule("blocks").children()))
    blocks = [f"{prefix}blocks.{i}" for i in reversed(range(n_blocks))]
    return [f"{prefix}classifier", f"{prefix}conv_head", *blocks, f"{prefix}conv_stem"]


def randomize_group(model: nn.Module, group: str, seed: int = D.sanity.seed) -> int:
    """Re-initialise, in place, every module under ``group`` that has ``reset_parameters``.

    Args:
        model: the network to change (pass a copy: this is in place).
        group: a dotted submodule path, e.g. ``net.blocks.6``.
        seed: the torch seed set before each module's ``reset_parameters`` (forked generator).

    Returns:
        How many modules were re-initialised (≥ 1).

    Raises:
        ParamError: ``group`` is not a submodule, or has no module with parameters to reset.
    """
    try:
        root = model.get_submodule(group)
    except AttributeError:
        raise ParamError(f"groups: {group!r} is not a submodule of the model ({_PATH_HINT})") from None
    modules = [m for m in root.modules() if hasattr(m, "reset_parameters")]
    if not modules:
        raise ParamError(f"groups: {group!r} has no layer with parameters to re-initialise")
    device = next(iter(modules[0].parameters()), torch.empty(0)).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for m in modules:
            torch.manual_seed(seed)
            cast(Any, m).reset_parameters()  # every module kept above has it
    return len(modules)


def _explain(model: nn.Module, x: torch.Tensor, method: str, target: torch.Tensor, params: Mapping[str, Any]):
    """Raw attribution and non-negative map of one method (:func:`deepsaliency.attribution.attribute`).

    Raises:
        ParamError: ``method`` is not in :data:`deepsaliency.methods.METHODS` (names ``methods``).
    """
    from ..attribution import attribute, reduce_map
    from ..methods import method as registered

    registered(method, "methods")
    attr = attribute(model, x, method, target=target, **params)
    return attr, reduce_map(attr, method)


def _spearman_signed(a: np.ndarray, b: np.ndarray) -> float:
    if _constant(a) or _constant(b):
        return 0.0
    return float(np.clip(scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic, -1.0, 1.0))


def _checked(
    model: nn.Module,
    mode: str,
    methods: Mapping[str, Mapping[str, Any]] | Sequence[str],
    groups: Sequence[str] | None,
    max_depth: int | None,
) -> tuple[dict[str, dict], list[str]]:
    """:func:`randomization_test`'s arguments checked before any explanation is computed: ``({method: params},
    the groups to randomise in order)``."""
    if mode not in MODES:
        raise ParamError(f"mode: {mode!r} is not allowed (one of {', '.join(MODES)})")
    if isinstance(methods, Mapping):
        method_params = {m: dict(p or {}) for m, p in methods.items()}
    else:
        method_params = {m: {} for m in methods}
    if not method_params:
        raise ParamError("methods: empty; name at least one method")
    chosen = list(layer_groups(model) if groups is None else groups)
    if max_depth is not None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or not 0 <= max_depth <= len(chosen):
            allowed = f"an integer in [0, {len(chosen)}], the layer groups"
            raise ParamError(f"max_depth: {max_depth!r} is not allowed ({allowed})")
        chosen = chosen[:max_depth]
    for g in chosen:
        try:
            model.get_submodule(g)
        except AttributeError:
            raise ParamError(f"groups: {g!r} is not a submodule of the model ({_PATH_HINT})") from None
    return method_params, chosen


def randomization_test(
    model: nn.Module,
    x: torch.Tensor,
    methods: Mapping[str, Mapping[str, Any]] | Sequence[str],
    target: int | Sequence[int] | torch.Tensor | None = None,
    mode: str = "cascading",
    groups: Sequence[str] | None = None,
    max_depth: int | None = None,
    seed: int = D.sanity.seed,
    images: Sequence[str] | None = None,
    return_maps: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict]:
    """Cascading or independent model-parameter randomisation (Adebayo et al. 2018).

    Args:
        model: a classifier in [0, 1] pixel space (never modified: the randomisation works on a deep copy).
        x: images (B, 3, H, W) in [0, 1].
        methods: method names, or ``{method: params}`` (e.g. ``{"integrated_gradients": {"n_steps": 16}}``);
            any method of :data:`deepsaliency.methods.METHODS`.
        target: the class to explain per image; None → the *original* model's prediction, kept fixed
            for every depth (the randomised model explains the same class).
        mode: ``cascading`` (groups 1..k random at depth k) or ``independent`` (only group k).
        groups: dotted submodule paths from the top; None → :func:`layer_groups`.
        max_depth: stop after this many groups (None → all); depth 0 is always included.
        seed: re-initialisation seed (see the module docstring).
        images: names for the ``image`` column (default ``"0"``, ``"1"``, …).
        return_maps: also return ``{(method, depth): (attribution (B, C, H, W), map (B, H, W))}``.

    Returns:
        A long table, one row per method × depth × image, columns ``method, mode, depth, group,
        image`` and :data:`SANITY_METRICS` (ρ in [-1, 1], SSIM in [-1, 1]; 1 at depth 0). ``group``
        is the group randomised last (``"original"`` at depth 0). With ``return_maps``, also the maps.

    Raises:
        ParamError: unknown mode, method or group, or ``max_depth`` out of range.
    """
    method_params, groups = _checked(model, mode, methods, groups, max_depth)
    x = x.detach()
    if target is None:
        with torch.no_grad():
            target = model(x).argmax(-1)
    target = torch.as_tensor(target, device=x.device).reshape(-1).expand(len(x))
    names = list(images) if images is not None else [str(i) for i in range(len(x))]

    originals = {m: _explain(model, x, m, target, p) for m, p in method_params.items()}
    rows, maps = [], {}
    work = copy.deepcopy(model)
    pristine = {k: v.clone() for k, v in work.state_dict().items()} if mode == "independent" else None
    for depth in range(len(groups) + 1):
        if depth > 0:
            if pristine is not None:
                work.load_state_dict(pristine)
            randomize_group(work, groups[depth - 1], seed=seed)
        for method, params in method_params.items():
            attr, red = _explain(work, x, method, target, params)
            if return_maps:
                maps[(method, depth)] = (attr.cpu(), red.cpu())
            o_attr, o_red = originals[method]
            for i, name in enumerate(names):
                a, b = o_red[i].cpu().numpy(), red[i].cpu().numpy()
                rows.append(
                    {
                        "method": method,
                        "mode": mode,
                        "depth": depth,
                        "group": groups[depth - 1] if depth else "original",
                        "image": name,
                        "spearman_abs": spearman(a, b),
                        "spearman_signed": _spearman_signed(
                            o_attr[i].sum(0).cpu().numpy(), attr[i].sum(0).cpu().numpy()
                        ),
                        "ssim": ssim(a, b),
                    }
                )
    table = pd.DataFrame(rows)
    return (table, maps) if return_maps else table


def summarize(table: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Mean and Student-t confidence interval over images of every metric, per method × mode × depth.

    The interval is mean ± t_{(1+confidence)/2, n−1} · sd / √n (``scipy.stats.t``), clipped to the
    metrics' range [-1, 1]; with one image or zero spread it collapses to the mean (never NaN).

    Args:
        table: :func:`randomization_test`'s output.
        confidence: in (0, 1).

    Returns:
        One row per method × mode × depth × group with ``n`` and, per metric, ``<metric>``,
        ``<metric>_lo``, ``<metric>_hi``.

    Raises:
        ParamError: ``confidence`` is not in (0, 1).
    """
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ParamError(f"confidence: {confidence!r} is not allowed (a number in (0, 1), e.g. 0.95)")
    out = []
    for key, part in table.groupby(["method", "mode", "depth", "group"], sort=False):
        row = dict(zip(("method", "mode", "depth", "group"), key, strict=True), n=len(part))
        for metric in SANITY_METRICS:
            v = part[metric].to_numpy(dtype=np.float64)
            mean, half = float(v.mean()), 0.0
            if len(v) > 1 and v.std(ddof=1) > 0:
                half = float(scipy.stats.t.ppf((1 + confidence) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
            # every metric lies in [-1, 1]; the t-interval of a mean near 1 can overshoot it
            lo, hi = max(-1.0, mean - half), min(1.0, mean + half)
            row.update({metric: mean, f"{metric}_lo": lo, f"{metric}_hi": hi})
        out.append(row)
    return pd.DataFrame(out)
