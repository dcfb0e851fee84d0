"""Reading user images robustly and turning them into model-ready tensors.

Every odd-but-valid image (gray, RGBA, palette, 16-bit, CMYK, EXIF-rotated,
tiny or huge) becomes an RGB uint8 array; anything unreadable raises an
:class:`~deepsaliency.errors.ImageError` naming the file and the reason.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
RESIZE_MODES = ("stretch", "center_crop")


def list_images(directory: str | Path) -> list[Path]:
    """Image files in ``directory`` (by extension), sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ImageError(f"{directory}: image folder does not exist")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ImageError(f"{directory}: no images found (allowed extensions: {', '.join(IMAGE_EXTENSIONS)})")
    stems = [p.stem for p in files]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ImageError(f"{directory}: several files share the name {dup[0]!r}; outputs are keyed by name, rename one")
    return files


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / integer gray: PIL's convert('L') clips at 255, so scale by the type's range.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to an RGB uint8 array (H, W, 3), EXIF orientation applied.

    Raises:
        ImageError: the file is empty, truncated, corrupt or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: not a readable image (empty file)")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a readable image (unknown format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"{path}: not a readable image ({reason})") from None
    return np.asarray(rgb, dtype=np.uint8).copy()


def resize_image(rgb: np.ndarray, size: tuple[int, int], mode: str = "stretch") -> np.ndarray:
    """Resize an RGB uint8 array to ``size`` = (H, W).

    Args:
        mode: ``stretch`` resizes to (H, W) directly (bilinear, antialiased);
            ``center_crop`` resizes the shorter side to fit, then crops the centre.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"prepare.resize: {mode!r} is not allowed (use one of {', '.join(RESIZE_MODES)})")
    h, w = size
    img = Image.fromarray(rgb)
    if mode == "center_crop":
        scale = max(h / img.height, w / img.width)
        img = img.resize((max(w, round(img.width * scale)), max(h, round(img.height * scale))), Image.BILINEAR)
        left, top = (img.width - w) // 2, (img.height - h) // 2
        img = img.crop((left, top, left + w, top + h))
    else:
        img = img.resize((w, h), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).copy()


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) → float tensor (1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(255.0).unsqueeze(0)


def to_image(x: torch.Tensor) -> np.ndarray:
    """Float tensor (3, H, W) or (1, 3, H, W) in [0, 1] → RGB uint8 (H, W, 3), rounded."""
    x = x.detach().float().cpu().squeeze(0).clamp(0, 1)
    return (x.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def load_img(path: str | Path, model=None, size: tuple[int, int] | None = None, resize: str = "stretch"):
    """Load an image for display and for the model.

    Args:
        path: an image file.
        model: a :class:`~deepsaliency.Model`; its ``input_size`` and device are used.
        size: (H, W) when no model is given (default 224×224).
        resize: ``stretch`` or ``center_crop`` (see :func:`resize_image`).

    Returns:
        ``(img, x)``: the resized RGB uint8 array (H, W, 3) and the tensor
        (1, 3, H, W) in [0, 1], on the model's device.
    """
    size = tuple(model.input_size) if model is not None else (size or (224, 224))
    img = resize_image(read_rgb(path), size, resize)
    x = to_tensor(img)
    if model is not None:
        x = x.to(model.device)
    return img, x


def prepare_images(images_dir: str | Path, out_dir: str | Path, model, resize: str = "stretch"):
    """Convert every image in ``images_dir`` to the model's input size and classify it.

    Writes ``<stem>.png`` (RGB, H×W of the model) per image and ``manifest.csv``
    (file, stem, class_idx, label, prob) into ``out_dir``. Every image is decoded
    before anything is written, so one broken file costs seconds, not a run.

    Returns:
        The manifest as a pandas DataFrame.
    """
    import pandas as pd

    files = list_images(images_dir)
    arrays = [resize_image(read_rgb(f), model.input_size, resize) for f in files]
    x = torch.cat([to_tensor(a) for a in arrays])
    pred = model.classify(x)
    out_dir = Path(out_dir)
    for f, a in zip(files, arrays):
        Image.fromarray(a).save(out_dir / f"{f.stem}.png")
    manifest = pd.DataFrame(
        {"file": [f.name for f in files], "stem": [f.stem for f in files], "class_idx": pred.indices,
         "label": pred.labels, "prob": [round(p, 6) for p in pred.probabilities]}
    )
    manifest.to_csv(out_dir / "manifest.csv", index=False)
    return manifest
