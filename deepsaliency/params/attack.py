"""The attack sections of ``params.yaml``: ``attack`` (Dombrowski et al. 2019), ``untargeted`` (Ghorbani et
al. 2019) and ``compute`` (where stages run); one default per key.

``attack.<method>`` holds what one attacked method's stage reads alone (so a sweep of
``attack.saliency.num_iter`` reruns only its stages). The run models have no defaults of their own: each
method's default is the default instance of its field in :class:`Attack` (:data:`ATTACK`), the values the
attack library takes as its defaults too.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from ..methods import ATTACK_METHODS
from .types import Budgets, Names, NonNegInt, NonNegNum, PosInt, PosNum, Rate, Section, ShardIndices, Unit, Words

AttackNames = Annotated[list[str], Names(ATTACK_METHODS)]


class AttackRun(Section):
    """One attacked method's optimisation (``attack.<method>``)."""

    num_iter: PosInt = Field(description="Adam steps")
    lr: Rate = Field(description="Adam step in [0, 1] pixel units, cosine-decayed to `lr_end`")
    lr_end: Unit = Field(description="the last step's learning rate (≤ `lr`)")
    a: NonNegNum = Field(description="weight of the explanation term `MSE(h(x_adv), h_t)`")
    eval_every: PosInt = Field(description="evaluate the iterate on the original network every this many steps")

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`deepsaliency.attack.run_attack` from this section (with ``resample``)."""
        return self.model_dump(exclude=set(self.EXPLANATION_KEYS))

    #: The keys that are the explanation's parameters during the attack, not the optimisation's.
    EXPLANATION_KEYS: ClassVar[tuple[str, ...]] = ()

    def explanation_kwargs(self) -> dict[str, Any]:
        """The explanation's parameters during the attack, as the differentiable explanation names them
        (``attack.rise.masks`` is ``rise_masks``: ``masks`` are the loaded RISE masks)."""
        return {("rise_masks" if k == "masks" else k): getattr(self, k) for k in self.EXPLANATION_KEYS}


_RESAMPLE = "redraw the samples at every step"


class AttackIntegratedGradients(AttackRun):
    """``attack.integrated_gradients`` (and its smoothed version): the path points per step."""

    n_steps: PosInt = Field(description="IG path points per attack step (each costs a double backward)")
    resample: bool = Field(description=_RESAMPLE)
    EXPLANATION_KEYS = ("n_steps",)


class AttackSmoothGrad(AttackRun):
    """``attack.smoothgrad``: the noisy samples per step."""

    nt_samples: PosInt = Field(description="SmoothGrad samples per attack step")
    resample: bool = Field(description=_RESAMPLE)
    EXPLANATION_KEYS = ("nt_samples",)


class AttackRise(AttackRun):
    """``attack.rise``: the masks per step."""

    masks: PosInt = Field(description="random subset of the RISE masks per attack step (≤ `rise.N`)")
    resample: bool = Field(description=_RESAMPLE)
    EXPLANATION_KEYS = ("masks",)


def _run(num_iter: int, lr: float = 2e-3, lr_end: float = 5e-5, a: float = 1e11, **more: Any) -> dict[str, Any]:
    return {"num_iter": num_iter, "lr": lr, "lr_end": lr_end, "a": a, "eval_every": more.pop("eval_every", 10)} | more


_SALIENCY = _run(150)
# 160 steps, measured (3 samples, 8/255, tol 0.001): r(adv, target) 0.501 at 40 steps, 0.828 at 160; 2 path
# points × 160 steps 0.734; lr 0.01 × 40 steps 0.445. At 40 steps IG looked robust only because its attack stopped.
_IG = _run(160, 3e-3, 1e-4, resample=True, n_steps=4)


class Attack(Section):
    """The targeted manipulation of Dombrowski et al. (2019): shared keys and one section per method."""

    methods: AttackNames = Field(
        default=[
            "saliency",
            "input_x_gradient",
            "integrated_gradients",
            "smoothgrad",
            "rise",
            "gradcam",
            "saliency_smoothed",
            "input_x_gradient_smoothed",
            "integrated_gradients_smoothed",
        ],
        description="attacked methods (each must be in `explain.methods`); one `attack@<m>-<ε>-<k>` stage per "
        "method, budget and shard",
    )
    target_image: Annotated[str, Field(min_length=1)] = Field(
        default="next",
        description="each image is pushed toward the map of the next image (cyclically), or of one named image",
    )
    b: NonNegNum = Field(default=1e6, description="weight of the output term `MSE(softmax(x_adv), softmax(x))`")
    beta_start: PosNum = Field(default=10.0, description="softplus β of the smoothed network at the first step")
    beta_end: PosNum = Field(default=100.0, description="softplus β at the last step (annealed geometrically)")
    eps: Budgets = Field(
        default=[4, 8],
        description="L∞ budgets in /255 units, the same for every method; a DVC `matrix` axis, so adding a budget "
        "runs only the new `attack@<m>-<ε>` items; enforced by projection every step (`x_adv` clamped to [0, 1])",
    )
    tol: Unit | None = Field(
        default=0.001,
        description="convergence: an image's attack stops once, over the last 20 % of its steps, its best evaluated "
        "loss improved by less than `tol` (relative) AND every iterate evaluated there kept the class with a loss "
        "within `tol` of the best (at rest: an excursion above the best is not convergence); `null` = always "
        "`num_iter` steps. Each image records `converged`, `steps` and `passes`",
        json_schema_extra={"null": "null (always num_iter steps)"},
    )
    seed: NonNegInt = Field(default=0, description="seed of the RISE mask subsets")
    saliency: AttackRun = AttackRun(**_SALIENCY)
    input_x_gradient: AttackRun = AttackRun(**_run(100))
    integrated_gradients: AttackIntegratedGradients = AttackIntegratedGradients(**_IG)
    smoothgrad: AttackSmoothGrad = AttackSmoothGrad(**_run(30, 4e-3, 1e-4, resample=False, nt_samples=3))
    # RISE: a budget of 80 steps, measured (3 samples, 8/255): every attack met the convergence rule at step 55
    # (r(adv, target) 0.525), where 20 steps stopped short of it (0.513, best loss still falling 0.2–0.8 %).
    rise: AttackRise = AttackRise(**_run(80, 4e-3, 1e-4, 1e13, eval_every=5, resample=False, masks=16))
    # Grad-CAM moves the map in 50 steps (r(adv, target) ≥ 0.99 on the samples at 8/255); the β-smoothed methods
    # get the attack of the method they defend (Dombrowski et al. 2019, sec. 5: same ε, same attack).
    gradcam: AttackRun = AttackRun(**_run(50))
    saliency_smoothed: AttackRun = AttackRun(**_SALIENCY)
    input_x_gradient_smoothed: AttackRun = AttackRun(**_run(100))
    integrated_gradients_smoothed: AttackIntegratedGradients = AttackIntegratedGradients(**_IG)

    def run(self, method: str) -> AttackRun:
        """The section ``attack.<method>``."""
        section: AttackRun = getattr(self, method)
        return section

    def shared_kwargs(self) -> dict[str, Any]:
        """The keys every attack stage shares, as :func:`deepsaliency.attack.run_attack` names them."""
        return {"b": self.b, "beta_start": self.beta_start, "beta_end": self.beta_end, "tol": self.tol}


class Untargeted(Section):
    """Ghorbani et al. (2019)'s untargeted attacks on the map: top-k and centre of mass."""

    methods: AttackNames = Field(
        default=["saliency", "input_x_gradient", "gradcam"], description="methods attacked without a target map"
    )
    eps: Budgets = Field(default=[8], description="L∞ budgets in /255 units, each one of `attack.eps`")
    kinds: Annotated[list[str], Names(("topk", "center_of_mass"))] = Field(
        default=["topk", "center_of_mass"], description="Ghorbani et al. 2019's top-k and centre-of-mass attacks"
    )
    k: PosInt = Field(default=1000, description="pixels of the top-k set (≤ `model.input_size`²)")
    num_iter: PosInt = Field(default=50, description="Adam steps")
    lr: Rate = Field(default=0.002, description="Adam step in [0, 1] pixel units, cosine-decayed to `lr_end`")
    lr_end: Unit = Field(default=0.00005, description="the last step's learning rate (≤ `lr`)")
    eval_every: PosInt = Field(default=10, description="evaluate the iterate every this many steps")
    a_topk: NonNegNum = Field(
        default=1e4,
        description="weight of the top-k explanation term (a share in [0, 1]: at 100 it lost to the class term "
        "b·MSE and the attack returned x unchanged)",
    )
    a_center_of_mass: NonNegNum = Field(default=1.0, description="weight of the centre-of-mass explanation term")

    def run_kwargs(self, kind: str) -> dict[str, Any]:
        """Keyword arguments of :func:`deepsaliency.attack.untargeted_attack` for ``kind`` (without ``eps``)."""
        keys = ("k", "num_iter", "lr", "lr_end", "eval_every")
        return {"kind": kind, "a": getattr(self, f"a_{kind}")} | {key: getattr(self, key) for key in keys}


class Pgd(Section):
    """Untargeted L∞ PGD on the prediction (Madry et al. 2018; ``captum.robust``), random start."""

    eps: Rate = Field(default=0.0313725, description="L∞ budget of the untargeted PGD in pixel units (8/255)")
    step_size: Rate = Field(default=0.0078431, description="PGD step in pixel units (2/255)")
    steps: PosInt = Field(default=10, description="PGD steps, from a random start")
    seed: NonNegInt = Field(default=0, description="seed of the random start")


RayAddress = Annotated[str, Field(pattern=r"^(auto|ray://[^\s:/]+:\d+)$"), Words("auto or ray://host:port")]


class Compute(Section):
    """Where a stage's batches run (``deepsaliency.backend``, issue 14)."""

    backend: Literal["local", "ray"] = Field(
        default="local", description="run batches in this process or on Ray workers"
    )
    batch_size: PosInt = Field(default=8, description="images per batch")
    shards: ShardIndices = Field(
        default=[0],
        description="shards of the prepared set (by a hash of the file name), one DVC stage item each; "
        "`[0, 1, 2, 3]` = 4 shards",
    )
    workers: PosInt = Field(default=2, description="Ray actors (`ray` only)")
    threads: PosInt | None = Field(
        default=None,
        description="torch threads per worker; `null` = torch's default",
        json_schema_extra={"null": "null (torch's default)"},
    )
    gpus_per_worker: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        default=0.0, description="GPUs per Ray actor (fractions share a GPU)"
    )
    ray_address: RayAddress | None = Field(
        default=None,
        description="`null` = start Ray on this machine; `auto` or `ray://host:port` = join a cluster",
        json_schema_extra={"null": "null (a local Ray)"},
    )

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`deepsaliency.backend.Compute` (``Compute(**section.kwargs())``):
        every key but ``batch_size`` and ``shards`` (the stage's batching and DVC's items); ``threads`` null is
        left out, so Compute's own value applies until it takes None (torch's default). Not built here: importing
        the backend would make it a DVC dep of every stage that reads params."""
        dumped = self.model_dump(exclude={"batch_size", "shards"})
        return {k: v for k, v in dumped.items() if v is not None or k == "ray_address"}


#: The attack's defaults: ``ATTACK.saliency.lr``, ``ATTACK.run("rise").run_kwargs()``, ``ATTACK.b``.
ATTACK = Attack()
#: The untargeted attack's defaults.
UNTARGETED = Untargeted()
