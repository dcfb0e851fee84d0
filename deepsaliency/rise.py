"""RISE: Randomized Input Sampling for Explanation (Petsiuk et al., 2018).

https://arxiv.org/abs/1806.07421

Captum has no RISE, so it is written here. Masks are stored compactly — the
binary s×s grids (bit-packed) and the random shifts — and expanded to float
masks batch by batch, so N = 4000 masks at 224×224 take ~40 kB instead of the
reference implementation's float64 N×H×W array (1.6 GB). The expanded masks are
the reference's (github.com/eclique/RISE, ``generate_masks``) to float32 precision:
``skimage.transform.resize(grid, up, order=1, mode='reflect', anti_aliasing=False)``
cropped at the shift.

Besides the paper's i.i.d. masks (``sampling="random"``), :func:`generate_masks` can draw
the grids and shifts as a scrambled Sobol' sequence (``"sobol"``) or as antithetic pairs
(``"antithetic"``), which reach the same map with fewer forward passes; see
:func:`generate_masks` and README, Performance, for the measurements.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import qmc
from skimage.transform import resize
from tqdm.auto import tqdm

from ._validate import check_choice, check_float, check_int, check_target, num_classes
from .errors import ParamError
from .models import preserves_model_state
from .params import DEFAULTS as D  # the one default of each parameter: the params section's

SAMPLINGS = ("random", "sobol", "antithetic")
"""The mask sampling schemes of :func:`generate_masks` (``random`` is the paper's)."""
# scipy's Sobol' direction numbers cover this many dimensions (s² cells + 2 shifts).
_SOBOL_MAX_DIM = 21201


@dataclass(frozen=True)
class RiseMasks:
    """N random RISE masks in compact form.

    Mask i is the grid ``grids[i]`` (s×s, P(1) = p1), upsampled to ((s+1)·⌈H/s⌉, (s+1)·⌈W/s⌉)
    exactly as the reference implementation does it — ``skimage.transform.resize`` with
    ``order=1, mode='reflect', anti_aliasing=False``: bilinear with half-pixel centres, and
    beyond the outermost cell centres the grid is mirrored (``numpy.pad``'s ``reflect``:
    ``c b | a b c``), not repeated — then cropped to (H, W) at offset ``shifts[i]``.
    Each expanded value is a convex combination of grid cells, so E[M(x)] = p1 at every pixel.

    Attributes:
        grids: bool array (N, s, s).
        shifts: int array (N, 2), the (dy, dx) crop offsets, each in [0, ⌈H/s⌉) resp. [0, ⌈W/s⌉).
        p1: probability of a grid cell being 1.
        input_size: (H, W) of the expanded masks.
        seed: the seed the masks were drawn with (for provenance).
        sampling: how the grids and shifts were drawn, one of :data:`SAMPLINGS`.
    """

    grids: np.ndarray
    shifts: np.ndarray
    p1: float
    input_size: tuple[int, int]
    seed: int | None = None
    sampling: str = "random"

    def __len__(self) -> int:
        return len(self.grids)

    @property
    def s(self) -> int:
        return int(self.grids.shape[1])

    def take(self, indices, device: torch.device | str = "cpu") -> torch.Tensor:
        """Float masks for ``indices``, shape (len(indices), 1, H, W), values in [0, 1]."""
        idx = np.asarray(indices, dtype=np.int64)
        h, w = self.input_size
        # Bilinear upsampling is separable: mask = U_y · grid · U_xᵀ, with U the (up × s)
        # interpolation matrix. Selecting U's rows at each shift crops for free, so no
        # (s+1)·⌈H/s⌉-sized intermediate is ever built (≈40× faster than upsample + crop).
        uy = _interpolation_matrix(self.s, (self.s + 1) * math.ceil(h / self.s)).to(device)
        ux = _interpolation_matrix(self.s, (self.s + 1) * math.ceil(w / self.s)).to(device)
        shifts = torch.from_numpy(self.shifts[idx]).to(device)
        rows = uy[shifts[:, 0, None] + torch.arange(h, device=device)]  # (B, H, s)
        cols = ux[shifts[:, 1, None] + torch.arange(w, device=device)]  # (B, W, s)
        grid = torch.from_numpy(self.grids[idx]).to(device=device, dtype=torch.float32)
        return (rows @ grid @ cols.transpose(1, 2)).unsqueeze(1)

    def dense(self, i: int = 0, j: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        """Float masks ``i`` to ``j`` (exclusive), shape (j − i, 1, H, W)."""
        j = len(self) if j is None else j
        return self.take(np.arange(i, j), device=device)

    def save(self, path: str | Path) -> None:
        """Write the compact form to an ``.npz`` file (grids bit-packed)."""
        with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz"
            np.savez_compressed(
                f,
                grids=np.packbits(self.grids.reshape(len(self), -1), axis=1),
                shifts=self.shifts.astype(np.int16),
                meta=np.array([len(self), self.s, self.input_size[0], self.input_size[1]], dtype=np.int64),
                p1=np.float64(self.p1),
                seed=np.int64(-1 if self.seed is None else self.seed),
                sampling=np.array(self.sampling),
            )

    @classmethod
    def load(cls, path: str | Path) -> RiseMasks:
        """Read masks written by :meth:`save` (files from before ``sampling`` existed read as ``random``).

        Raises:
            ParamError: the file is not a masks file of this format, naming the path.
        """

        def bad(what: str) -> ParamError:
            return ParamError(
                f"masks file {str(path)!r}: not a RISE masks file ({what}); "
                "regenerate it with generate_masks(...).save() or the masks stage"
            )

        try:
            with np.load(path) as z:
                missing = [k for k in ("meta", "grids", "shifts", "p1", "seed") if k not in z.files]
                if missing:
                    raise bad(f"missing array {', '.join(map(repr, missing))}")
                n, s, h, w = (int(v) for v in z["meta"])
                grids = np.unpackbits(z["grids"], axis=1, count=s * s).reshape(n, s, s).astype(bool)
                seed = int(z["seed"])
                # Files written before rise.sampling existed hold i.i.d. masks.
                sampling = str(z["sampling"]) if "sampling" in z.files else "random"
                shifts, p1 = z["shifts"].astype(np.int64), float(z["p1"])
        except (OSError, ValueError, AttributeError) as exc:
            if isinstance(exc, ParamError):
                raise
            raise bad(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        if sampling not in SAMPLINGS:
            raise ParamError(
                f"masks file {str(path)!r}: sampling {sampling!r} is not allowed (one of {', '.join(SAMPLINGS)})"
            )
        return cls(grids, shifts, p1, (h, w), None if seed < 0 else seed, sampling)


@functools.lru_cache(maxsize=32)
def _interpolation_matrix(s: int, size: int) -> torch.Tensor:
    """(size × s) float32 CPU tensor U with U·v = the reference's upsampling of v (length s) to ``size``.

    Built by letting scikit-image resize the identity (column k = the resize of unit vector e_k), so
    the matrices are skimage's own order-1, ``mode='reflect'`` resize — the one the RISE authors call —
    and not a re-derivation of its boundary rule. Resizing s → s along the other axis is the identity.
    """
    u = resize(np.eye(s), (size, s), order=1, mode="reflect", anti_aliasing=False)
    return torch.from_numpy(u.astype(np.float32))  # shared by the cache: never modified in place


def generate_masks(
    N: int = D.rise.N,
    s: int = D.rise.s,
    p1: float = D.rise.p1,
    input_size: int | tuple[int, int] = D.model.input_size,
    seed: int = D.rise.seed,
    sampling: str = D.rise.sampling,
) -> RiseMasks:
    """Draw N RISE masks (Petsiuk et al. 2018), deterministically for a seed.

    Every scheme gives each single mask the paper's distribution — cells i.i.d. Bernoulli(p1), shifts
    uniform on [0, ⌈H/s⌉) × [0, ⌈W/s⌉) — so the RISE estimate S = Σ_i p(x ⊙ M_i)·M_i / (N·p1) of
    :func:`explain` stays unbiased (it is linear in the masks, and E[p·M] is all it estimates); the
    schemes differ only in how the N masks depend on each other:

    - ``random``: i.i.d. masks, the paper's (and the reference code's) sampling. Error ∝ 1/√N.
    - ``antithetic``: pairs from one uniform draw u per cell: mask 2j keeps the cells with
      ``u < p1``, mask 2j + 1 those with ``1 − u < p1``, both at the same shift. For p1 = 0.5 the
      second is the complement of the first, so every pair averages to exactly 0.5 at every pixel
      and the largest part of RISE's noise, E[p]·(mean of the masks − p1), is gone: what is left
      is (p(M) − p(1 − M))·(M − ½) per pair, whose even-order part in the cells cancels too.
    - ``sobol``: the same antithetic pairs, with (u, shift) of pair j taken from point j of a
      scrambled Sobol' sequence in [0, 1)^(s²+2) (``scipy.stats.qmc.Sobol``, linear matrix scramble
      plus digital shift, which keeps every point uniform): shift = ⌊u·⌈H/s⌉⌋. The pairs are then
      also stratified — each cell is kept in ≈ p1·N masks, and (p1 = 0.5) every two cells take each of their
      four joint values equally often in each block of 2^k pairs (k = 8 for s = 8), so the
      cross terms between cells also cancel. Needs s² + 2 ≤ 21201 (scipy's direction numbers).

    Neither scheme is in the RISE paper or its code; README, Performance, has the measured gain.

    Args:
        N: number of masks (> 0).
        s: grid size (cells per side), 1 ≤ s ≤ min(H, W).
        p1: probability that a cell is kept, in (0, 1).
        input_size: (H, W) of the model input (an int means square).
        seed: seed of the numpy generator (random, antithetic) or of the Sobol' scramble (sobol).
        sampling: one of :data:`SAMPLINGS`.

    Returns:
        :class:`RiseMasks` in compact form; ``masks.dense(i, j)`` expands them. For ``random`` the
        grids and shifts are bit for bit those of earlier versions for the same seed.

    Raises:
        ParamError: an argument is out of range (one line naming it, the value and what is allowed).
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[1]))
    check_int(N, "N", 1)
    check_int(s, "s", 1, min(h, w), why="the input size")
    check_float(p1, "p1", 0.0, 1.0, low_open=True, high_open=True, allowed="a probability strictly between 0 and 1")
    check_choice(sampling, "sampling", SAMPLINGS)
    if sampling == "sobol" and s * s + 2 > _SOBOL_MAX_DIM:
        raise ParamError(f"s: {s!r} is not allowed with sampling 'sobol' (s² + 2 ≤ {_SOBOL_MAX_DIM}: s ≤ 145)")
    cell = (math.ceil(h / s), math.ceil(w / s))
    half = (N + 1) // 2
    if sampling == "random":
        rng = np.random.default_rng(seed)
        grids = rng.random((N, s, s)) < p1
        shifts = np.stack([rng.integers(0, cell[0], N), rng.integers(0, cell[1], N)], axis=1)
        return RiseMasks(grids, shifts, float(p1), (h, w), seed, sampling)
    if sampling == "sobol":
        # The first 2^m points of the sequence form a net; a prefix of any length is still well
        # spread, and drawing 2^m then cutting avoids scipy's balance warning.
        u = qmc.Sobol(d=s * s + 2, scramble=True, seed=seed).random_base2(max(0, math.ceil(math.log2(half))))[:half]
        cells, pair_shifts = u[:, : s * s].reshape(half, s, s), (u[:, s * s :] * cell).astype(np.int64)
    else:  # antithetic
        rng = np.random.default_rng(seed)
        cells = rng.random((half, s, s))
        pair_shifts = np.stack([rng.integers(0, cell[0], half), rng.integers(0, cell[1], half)], axis=1)
    # Pair j: masks 2j (u < p1) and 2j + 1 (1 − u < p1, the complement when p1 = 0.5), same shift.
    grids = np.stack([cells < p1, 1.0 - cells < p1], axis=1).reshape(2 * half, s, s)[:N]
    shifts = np.repeat(np.minimum(pair_shifts, np.array(cell) - 1), 2, axis=0)[:N]
    return RiseMasks(grids, shifts.astype(np.int64), float(p1), (h, w), seed, sampling)


def auto_batch_size(model, input_size, candidates=(4, 8, 16, 32), repeats: int = 2) -> int:
    """The batch size with the best measured forward throughput on this device.

    Throughput is not monotone in batch size on CPUs (cache effects made batch 8
    ~3× faster per image than batch 64 here), so it is measured, not guessed.
    """
    h, w = input_size
    best, best_rate = candidates[0], 0.0
    import time

    with torch.inference_mode():
        for b in candidates:
            x = torch.rand(b, 3, h, w, device=model.device).contiguous(memory_format=torch.channels_last)
            model(x)
            _sync(model.device)
            t = time.perf_counter()
            for _ in range(repeats):
                model(x)
            _sync(model.device)
            rate = b * repeats / (time.perf_counter() - t)
            if rate > best_rate:
                best, best_rate = b, rate
    return best


def resolve_batch_size(model, batch_size: int | str, input_size: tuple[int, int], name: str = "batch_size") -> int:
    """``batch_size`` checked (an integer ≥ 1), or for ``"auto"`` the fastest measured on ``model``'s device
    (:func:`auto_batch_size` at ``input_size``): the one place ``rise.batch_size: auto`` is resolved.

    Raises:
        ParamError: anything else, one line naming ``name``.
    """
    if batch_size == "auto":
        return auto_batch_size(model, input_size)
    return check_int(batch_size, name, 1, allowed="'auto' or an integer ≥ 1")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@preserves_model_state
def rise_saliency(
    model,
    x: torch.Tensor,
    masks: RiseMasks,
    N: int | None = None,
    batch_size: int | str = D.rise.batch_size,
    p1: float | None = None,
    target: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """RISE saliency of one image: S_c = Σ_i p_c(x ⊙ M_i) · M_i / (N · p1) (Petsiuk et al. 2018, eq. 6).

    The same formula serves every ``masks.sampling``: it estimates E[p_c(x ⊙ M)·M] / p1 and is linear
    in the masks, so it is unbiased whenever each mask alone has the paper's distribution, which
    the ``sobol`` and ``antithetic`` schemes keep (only the masks' mutual dependence changes, and
    with it the variance). With an odd N under those schemes the last pair is cut to one mask: still
    unbiased, no longer exactly balanced.

    Args:
        model: a classifier in pixel space (returns logits; softmax is applied here).
        x: the image, (1, 3, H, W) or (3, H, W), in [0, 1].
        masks: the masks from :func:`generate_masks` (or :meth:`RiseMasks.load`).
        N: use the first N masks (default: all).
        batch_size: masked images per forward pass (≥ 1), or ``"auto"``: the fastest measured on this device
            (:func:`auto_batch_size`; not byte-reproducible across machines). Default: ``rise.batch_size``.
        p1: the masks' keep probability (default: ``masks.p1``).
        target: a class index → returns (H, W); None → every class, (num_classes, H, W)
            as in the reference implementation (1000×224×224 floats: 200 MB).
        progress: show a tqdm bar.

    Returns:
        The saliency, float32 on the model's device.

    Raises:
        ParamError: ``N`` outside [1, len(masks)], ``batch_size`` < 1, or a ``target`` that is no class index.
    """
    n = len(masks) if N is None else check_int(N, "N", 1, len(masks), why="the masks available")
    batch_size = resolve_batch_size(model, batch_size, masks.input_size)
    p1 = masks.p1 if p1 is None else float(p1)
    x = x.reshape(1, *x.shape[-3:]).to(model.device)
    target = None if target is None else int(check_target(target, 1, num_classes(model, x))[0])  # None: all classes
    h, w = x.shape[-2:]
    sal: torch.Tensor | None = None
    with torch.inference_mode():
        for i in tqdm(range(0, n, batch_size), desc="RISE", disable=not progress, leave=False):
            m = masks.dense(i, min(i + batch_size, n), device=x.device)
            probs = model((x * m).contiguous(memory_format=torch.channels_last)).softmax(-1)
            weights = probs[:, target : target + 1] if target is not None else probs
            contrib = weights.T @ m.view(len(m), h * w)
            sal = contrib if sal is None else sal + contrib
    assert sal is not None  # n ≥ 1: the loop ran
    sal = (sal / (n * p1)).view(-1, h, w)
    return sal[0] if target is not None else sal


#: The seed project's name for :func:`rise_saliency`.
explain = rise_saliency
