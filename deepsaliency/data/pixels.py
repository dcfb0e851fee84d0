"""Decoding user images robustly and turning them into model-ready tensors.

Every still image Pillow decodes becomes an RGB uint8 array, whatever its pixel mode (see :func:`to_rgb`);
anything unreadable raises an :class:`~deepsaliency.errors.ImageError` naming the file and the reason.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError, ParamError

RESIZE_MODES = ("stretch", "center_crop")

#: Formats Pillow lists as readable but cannot decode here without something it does not ship.
_UNDECODABLE = {
    "EPS": "EPS needs Ghostscript, which Pillow calls but does not ship",
    "WMF": "WMF/EMF can only be rendered on Windows",
    "BUFR": "BUFR is only identified by Pillow (it needs a separate decoder plugin)",
    "GRIB": "GRIB is only identified by Pillow (it needs a separate decoder plugin)",
    "HDF5": "HDF5 is only identified by Pillow (it needs a separate decoder plugin)",
    "MPEG": "MPEG is video; Pillow only identifies it",
}


def _extensions() -> tuple[dict[str, str], dict[str, str]]:
    Image.init()
    still: dict[str, str] = {}
    refused: dict[str, str] = {}
    for ext, fmt in Image.registered_extensions().items():
        if fmt in Image.OPEN:
            (refused if fmt in _UNDECODABLE else still)[ext.lower()] = fmt
    return still, refused


_STILL, _REFUSED = _extensions()
#: Every extension Pillow decodes as a (still) image in this environment, e.g. ``.png .jpg .gif .tiff .webp``.
IMAGE_EXTENSIONS: tuple[str, ...] = tuple(sorted(_STILL))


def to_rgb(img: Image.Image, name: str = "image") -> np.ndarray:
    """Convert a Pillow image of any mode to RGB uint8 (H, W, 3), values 0–255.

    * ``1``, ``L``, ``P``, ``RGB``, ``RGBX``, ``CMYK`` (``(255-C)(255-K)/255``), ``YCbCr`` (JFIF, full range)
      and ``HSV``: Pillow's own ``convert("RGB")``.
    * ``RGBA``, ``LA``, ``PA``, ``RGBa`` and ``P`` with a transparent index: composited over white.
    * ``I;16``, ``I;16B``, ``I;16L``, ``I;16N`` (16-bit): ``round(v / 65535 · 255)``.
    * ``I`` (32-bit integer): 16-bit scaling when the maximum exceeds 255, else taken as 8-bit;
      values outside [0, 65535] are refused.
    * ``F`` (float): values in [0, 1] are scaled by 255, values in [0, 255] (maximum above 1) kept; anything
      else (negative, above 255, NaN, inf) is refused — there is no right way to guess its range.
    * ``LAB`` (bytes L* · 255/100, signed a*, b*; ``getpixel`` shows a*, b* + 128):
      :func:`skimage.color.lab2rgb` (D65), as Pillow's ``convert`` has no Lab → RGB transform.

    Args:
        img: the decoded image.
        name: what error messages call it (the file path).

    Raises:
        ImageError: a mode with no conversion, or values outside the range its mode allows.
    """
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _scale_gray(img, name)
    if mode == "LAB":
        from skimage.color import lab2rgb

        raw = np.asarray(img, dtype=np.uint8)  # storage: L* · 255/100, then a* and b* as signed bytes
        ab = raw[..., 1:].view(np.int8).astype(np.float64)
        lab = np.concatenate([raw[..., :1] * (100.0 / 255.0), ab], axis=-1)
        with warnings.catch_warnings():  # out-of-gamut colours are clipped below; the warning says the same
            warnings.simplefilter("ignore")
            rgb = lab2rgb(lab)
        return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    try:
        if mode in ("RGBA", "LA", "PA", "RGBa") or (mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            # Transparent pixels become white, as a browser shows them on a white page.
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        rgb = img.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"{name}: pixel mode {mode!r} is not supported ({exc})") from None
    return np.asarray(rgb, dtype=np.uint8).copy()


def _scale_gray(img: Image.Image, name: str) -> np.ndarray:
    arr = np.asarray(img).astype(np.float64)
    mode = img.mode
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if mode == "F":
        if not np.isfinite(arr).all() or lo < 0 or hi > 255:
            raise ImageError(
                f"{name}: float pixels in [{lo:g}, {hi:g}] are not allowed (mode F must lie in [0, 1] or [0, 255])"
            )
        top = 1.0 if hi <= 1.0 else 255.0
    else:
        if lo < 0 or hi > 65535:
            raise ImageError(
                f"{name}: integer pixels in [{lo:g}, {hi:g}] are not allowed (mode {mode} must lie in [0, 65535])"
            )
        top = 65535.0 if mode.startswith("I;16") or hi > 255 else 255.0
    gray = np.floor(arr / top * 255.0 + 0.5).astype(np.uint8)  # round half up, as PIL does
    return np.repeat(gray[..., None], 3, axis=-1)


def read_frames(path: Path) -> tuple[np.ndarray, int]:
    """The first frame of an image file as :func:`read_rgb` gives it, and the file's frame count (≥ 1).

    Raises:
        ImageError: as :func:`read_rgb`.
    """
    if not path.is_file():
        raise ImageError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: not a readable image (empty file)")
    try:
        with Image.open(path) as img:
            frames = getattr(img, "n_frames", 1)
            img.load()  # the first frame: an animation or multi-page file is prepared from its first image
            rgb = to_rgb(ImageOps.exif_transpose(img), str(path))
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a readable image (unknown format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageError):
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"{path}: not a readable image ({reason})") from None
    return rgb, frames


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to an RGB uint8 array (H, W, 3), EXIF orientation applied.

    Multi-frame files (animated GIF/PNG/WebP, multi-page TIFF, MPO from phone cameras) give their first
    frame. Pixel modes are converted as :func:`to_rgb` describes.

    Raises:
        ImageError: the file is empty, truncated, corrupt, not an image, or its pixels cannot be converted.
    """
    return read_frames(Path(path))[0]


def resize_image(rgb: np.ndarray, size: tuple[int, int], mode: str = "stretch") -> np.ndarray:
    """Resize an RGB uint8 array to ``size`` = (H, W).

    Args:
        mode: ``stretch`` resizes to (H, W) directly (bilinear, antialiased);
            ``center_crop`` resizes the shorter side to fit, then crops the centre.

    Raises:
        ParamError: ``mode`` is neither (a ``ValueError`` too).
    """
    if mode not in RESIZE_MODES:
        raise ParamError(f"mode: {mode!r} is not allowed (use one of {', '.join(RESIZE_MODES)})")
    h, w = size
    img = Image.fromarray(rgb)
    if mode == "center_crop":
        scale = max(h / img.height, w / img.width)
        big = (max(w, round(img.width * scale)), max(h, round(img.height * scale)))
        img = img.resize(big, Image.Resampling.BILINEAR)
        left, top = (img.width - w) // 2, (img.height - h) // 2
        img = img.crop((left, top, left + w, top + h))
    else:
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).copy()


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) → float tensor (1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(255.0).unsqueeze(0)


def to_image(x: torch.Tensor) -> np.ndarray:
    """Float tensor (3, H, W) or (1, 3, H, W) in [0, 1] → RGB uint8 (H, W, 3), rounded."""
    x = x.detach().float().cpu().squeeze(0).clamp(0, 1)
    return (x.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def load_img(
    path: str | Path, model: Any = None, size: tuple[int, int] | None = None, resize: str = "stretch"
) -> tuple[np.ndarray, torch.Tensor]:
    """Load an image for display and for the model.

    Args:
        path: an image file.
        model: a :class:`~deepsaliency.Model`; its ``input_size`` and device are used.
        size: (H, W) when no model is given (default 224×224).
        resize: ``stretch`` or ``center_crop`` (see :func:`resize_image`).

    Returns:
        ``(img, x)``: the resized RGB uint8 array (H, W, 3) and the tensor
        (1, 3, H, W) in [0, 1], on the model's device.

    Raises:
        ImageError: as :func:`read_rgb`.
        ParamError: ``resize`` is not a mode of :func:`resize_image`.
    """
    if model is not None:
        size = (int(model.input_size[0]), int(model.input_size[1]))
    size = size or (224, 224)
    img = resize_image(read_rgb(path), size, resize)
    x = to_tensor(img)
    if model is not None:
        x = x.to(model.device)
    return img, x
