"""The rules of ``params.yaml`` that join two or more keys, each a small function of the validated dict.

A rule raises :class:`ParamError` with one line naming the key it refuses, the value and what is allowed
given the other key (``rise.s: 500 is not allowed (an integer in [1, 224], model.input_size)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ParamError
from ..methods import ATTACK_METHODS, check_ig_steps, check_occlusion

Params = dict[str, Any]


def _refuse(key: str, value: Any, allowed: str) -> None:
    raise ParamError(f"{key}: {value!r} is not allowed ({allowed})")


def _sizes(p: Params) -> None:
    """Keys bounded by the image side or its pixel count."""
    size = p["model"]["input_size"]
    if p["rise"]["s"] > size:
        _refuse("rise.s", p["rise"]["s"], f"an integer in [1, {size}], model.input_size")
    # What Captum's Occlusion asserts (window fits, stride ≤ window), checked here instead of mid-stage.
    window, stride = p["occlusion"]["window"], p["occlusion"]["stride"]
    check_occlusion(window, stride, (size, size), ("occlusion.window", "occlusion.stride"), "model.input_size")
    # torchvision's reflect padding of the insertion blur needs kernel // 2 < the image side.
    if p["faithfulness"]["blur_kernel"] // 2 >= size:
        kernel = p["faithfulness"]["blur_kernel"]
        _refuse(
            "faithfulness.blur_kernel", kernel, f"an odd integer in [1, {2 * size - 1}] for model.input_size {size}"
        )
    pixels = size * size
    for key, value, top in (
        ("metrics.top_k", p["metrics"]["top_k"], pixels),
        ("faithfulness.step", p["faithfulness"]["step"], pixels),
        ("faithfulness.random_cell", p["faithfulness"]["random_cell"], size),
        ("untargeted.k", p["untargeted"]["k"], pixels),
    ):
        if value > top:
            _refuse(key, value, f"an integer in [1, {top}] for model.input_size {size}")


def _ig_steps(p: Params) -> None:
    """Captum's riemann_* rules need two or more steps; the attack uses the quadrature unless it resamples."""
    integration = p["integrated_gradients"]["integration"]
    check_ig_steps(p["integrated_gradients"]["n_steps"], integration, "integrated_gradients.n_steps")
    if not p["attack"]["integrated_gradients"]["resample"]:
        steps = p["attack"]["integrated_gradients"]["n_steps"]
        check_ig_steps(steps, integration, "attack.integrated_gradients.n_steps")
    smoothed = p["integrated_gradients_smoothed"]
    check_ig_steps(smoothed["n_steps"], smoothed["integration"], "integrated_gradients_smoothed.n_steps")
    if not p["attack"]["integrated_gradients_smoothed"]["resample"]:
        steps = p["attack"]["integrated_gradients_smoothed"]["n_steps"]
        check_ig_steps(steps, smoothed["integration"], "attack.integrated_gradients_smoothed.n_steps")


def _explained(p: Params) -> None:
    """Attacked and min-max-shown methods must be explained; ``explain.target`` is an ImageNet class."""
    explained = p["explain"]["methods"]
    missing = [m for m in p["attack"]["methods"] if m not in explained]
    if missing:
        why = f"attacked methods must also be in explain.methods: {', '.join(explained)}"
        _refuse("attack.methods", missing[0], why)
    if p["explain"]["target"] is not None and p["explain"]["target"] > 999:
        _refuse("explain.target", p["explain"]["target"], "null or a class index in [0, 999]")
    unshown = [m for m in p["plots"]["min_max_methods"] if m not in explained]
    if unshown:
        _refuse("plots.min_max_methods", unshown[0], f"methods must also be in explain.methods: {', '.join(explained)}")


def _attack_runs(p: Params) -> None:
    if p["attack"]["rise"]["masks"] > p["rise"]["N"]:
        _refuse("attack.rise.masks", p["attack"]["rise"]["masks"], f"an integer in [1, {p['rise']['N']}], rise.N")
    runs = [(f"attack.{m}", p["attack"][m]) for m in ATTACK_METHODS if m in p["attack"]]
    for key, run in [*runs, ("untargeted", p["untargeted"])]:
        if run["lr_end"] > run["lr"]:
            _refuse(f"{key}.lr_end", run["lr_end"], f"a number in [0, {run['lr']}], {key}.lr")


def _budgets(p: Params) -> None:
    """``report.rank_eps`` and ``untargeted.eps`` are budgets the manipulation attack runs at."""
    budgets = p["attack"]["eps"]
    listed = ", ".join(f"{e:g}" for e in budgets)
    rank_eps = p["report"]["rank_eps"]
    if rank_eps is not None and not any(abs(rank_eps - e) <= 1e-9 for e in budgets):
        raise ParamError(f"report.rank_eps: {rank_eps:g} is not allowed (null or one of attack.eps: {listed})")
    other = [e for e in p["untargeted"]["eps"] if not any(abs(e - b) <= 1e-9 for b in budgets)]
    if other:
        raise ParamError(f"untargeted.eps: {other[0]:g} is not allowed (one of attack.eps: {listed})")


def _shards(p: Params) -> None:
    """A shard's attack reads only its own shard's maps, so one named target image needs a single shard."""
    target, shards = p["attack"]["target_image"], p["compute"]["shards"]
    if target != "next" and len(shards) > 1:
        _refuse(
            "attack.target_image",
            target,
            f"'next' when compute.shards has {len(shards)} shards: an image is "
            "attacked toward another image of its own shard",
        )


#: Every cross-key rule, in the order they are checked.
RULES: tuple[Callable[[Params], None], ...] = (_sizes, _ig_steps, _explained, _attack_runs, _budgets, _shards)


def check_cross(p: Params) -> None:
    """Apply every rule of :data:`RULES` to the validated ``p``.

    Raises:
        ParamError: the first rule broken, as one line naming the key.
    """
    for rule in RULES:
        rule(p)
