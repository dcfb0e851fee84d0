"""RISE: Randomized Input Sampling for Explanation (Petsiuk et al., 2018).

https://arxiv.org/abs/1806.07421

Captum has no RISE, so it is written here. Masks are stored compactly — the
binary s×s grids (bit-packed) and the random shifts — and expanded to float
masks batch by batch, so N = 4000 masks at 224×224 take ~40 kB instead of the
reference implementation's float64 N×H×W array (1.6 GB).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import ParamError


@dataclass(frozen=True)
class RiseMasks:
    """N random RISE masks in compact form.

    Mask i is the grid ``grids[i]`` (s×s, P(1) = p1), upsampled bilinearly to
    ((s+1)·⌈H/s⌉, (s+1)·⌈W/s⌉) and cropped to (H, W) at offset ``shifts[i]``.

    Attributes:
        grids: bool array (N, s, s).
        shifts: int array (N, 2), the (dy, dx) crop offsets, each in [0, ⌈H/s⌉).
        p1: probability of a grid cell being 1.
        input_size: (H, W) of the expanded masks.
        seed: the seed the masks were drawn with (for provenance).
    """

    grids: np.ndarray
    shifts: np.ndarray
    p1: float
    input_size: tuple[int, int]
    seed: int | None = None

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
        uy = _interpolation_matrix(self.s, (self.s + 1) * math.ceil(h / self.s), device)
        ux = _interpolation_matrix(self.s, (self.s + 1) * math.ceil(w / self.s), device)
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
            )

    @classmethod
    def load(cls, path: str | Path) -> "RiseMasks":
        """Read masks written by :meth:`save`."""
        with np.load(path) as z:
            n, s, h, w = (int(v) for v in z["meta"])
            grids = np.unpackbits(z["grids"], axis=1, count=s * s).reshape(n, s, s).astype(bool)
            seed = int(z["seed"])
            return cls(grids, z["shifts"].astype(np.int64), float(z["p1"]), (h, w), None if seed < 0 else seed)


def _interpolation_matrix(s: int, size: int, device) -> torch.Tensor:
    """(size × s) matrix U with U·v = bilinear (align_corners=False) upsampling of v to ``size``."""
    eye = torch.eye(s, device=device).unsqueeze(0)  # (1, s, s): s signals of length s
    return F.interpolate(eye, size=size, mode="linear", align_corners=False)[0].T.contiguous()


def generate_masks(N: int = 2000, s: int = 8, p1: float = 0.5, input_size=(224, 224), seed: int = 0) -> RiseMasks:
    """Draw N RISE masks, deterministically for a seed.

    Args:
        N: number of masks (> 0).
        s: grid size (cells per side), 1 ≤ s ≤ min(H, W).
        p1: probability that a cell is kept, in (0, 1).
        input_size: (H, W) of the model input (an int means square).
        seed: seed of the numpy generator that draws grids and shifts.

    Returns:
        :class:`RiseMasks` in compact form; ``masks.dense(i, j)`` expands them.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[1]))
    if not (isinstance(N, int) and N > 0):
        raise ParamError(f"rise.N: {N!r} is not allowed (a positive integer)")
    if not (isinstance(s, int) and 1 <= s <= min(h, w)):
        raise ParamError(f"rise.s: {s!r} is not allowed (an integer in [1, {min(h, w)}], the input size)")
    if not (0.0 < float(p1) < 1.0):
        raise ParamError(f"rise.p1: {p1!r} is not allowed (a probability strictly between 0 and 1)")
    rng = np.random.default_rng(seed)
    grids = rng.random((N, s, s)) < p1
    cell = (math.ceil(h / s), math.ceil(w / s))
    shifts = np.stack([rng.integers(0, cell[0], N), rng.integers(0, cell[1], N)], axis=1)
    return RiseMasks(grids, shifts, float(p1), (h, w), seed)


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def explain(
    model,
    x: torch.Tensor,
    masks: RiseMasks,
    N: int | None = None,
    batch_size: int = 16,
    p1: float | None = None,
    target: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """RISE saliency of one image: S_c = Σ_i p_c(x ⊙ M_i) · M_i / (N · p1).

    Args:
        model: a classifier in pixel space (returns logits; softmax is applied here).
        x: the image, (1, 3, H, W) or (3, H, W), in [0, 1].
        masks: the masks from :func:`generate_masks` (or :meth:`RiseMasks.load`).
        N: use the first N masks (default: all).
        batch_size: masked images per forward pass.
        p1: the masks' keep probability (default: ``masks.p1``).
        target: a class index → returns (H, W); None → every class, (num_classes, H, W)
            as in the reference implementation (1000×224×224 floats: 200 MB).
        progress: show a tqdm bar.

    Returns:
        The saliency, float32 on the model's device.
    """
    n = len(masks) if N is None else int(N)
    if not 0 < n <= len(masks):
        raise ParamError(f"rise.N: {N!r} is not allowed (1 to the {len(masks)} masks available)")
    p1 = masks.p1 if p1 is None else float(p1)
    x = x.reshape(1, *x.shape[-3:]).to(model.device)
    h, w = x.shape[-2:]
    sal = None
    with torch.inference_mode():
        for i in tqdm(range(0, n, batch_size), desc="RISE", disable=not progress, leave=False):
            m = masks.dense(i, min(i + batch_size, n), device=x.device)
            probs = model((x * m).contiguous(memory_format=torch.channels_last)).softmax(-1)
            weights = probs[:, target : target + 1] if target is not None else probs
            contrib = weights.T @ m.view(len(m), h * w)
            sal = contrib if sal is None else sal + contrib
    sal = (sal / (n * p1)).view(-1, h, w)
    return sal[0] if target is not None else sal
