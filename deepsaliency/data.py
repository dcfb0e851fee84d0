"""Reading user images robustly and turning them into model-ready tensors.

Every still image Pillow decodes becomes an RGB uint8 array, whatever its pixel mode (see :func:`to_rgb`);
anything unreadable raises an :class:`~deepsaliency.errors.ImageError` naming the file and the reason.
:func:`prepare_images` reads a flat folder or a ``torchvision.datasets.ImageFolder`` layout (class
folders), optionally with a labels CSV and a seeded sample, in batches, so memory does not grow with the
number of images.
"""
from __future__ import annotations

import csv
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ParamError
from .labels import LabelError, class_index

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
BATCH_SIZE = 32
MANIFEST_COLUMNS = ("file", "stem", "class_idx", "label", "prob")
LABEL_COLUMNS = ("true_label", "correct")


# ----------------------------------------------------------------------------------------------- pixels
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
            raise ImageError(f"{name}: float pixels in [{lo:g}, {hi:g}] are not allowed (mode F must lie in [0, 1] "
                             "or [0, 255])")
        top = 1.0 if hi <= 1.0 else 255.0
    else:
        if lo < 0 or hi > 65535:
            raise ImageError(f"{name}: integer pixels in [{lo:g}, {hi:g}] are not allowed (mode {mode} must lie in "
                             "[0, 65535])")
        top = 65535.0 if mode.startswith("I;16") or hi > 255 else 255.0
    gray = np.floor(arr / top * 255.0 + 0.5).astype(np.uint8)  # round half up, as PIL does
    return np.repeat(gray[..., None], 3, axis=-1)


def _decode(path: Path) -> tuple[np.ndarray, int]:
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
    return _decode(Path(path))[0]


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


# ----------------------------------------------------------------------------------------------- folders
@dataclass(frozen=True)
class ImageEntry:
    """One input image: its path, its path relative to the root (``file``), its output ``stem`` and its
    true class index (None without labels)."""

    path: Path
    file: str
    stem: str
    true_label: int | None = None


@dataclass
class ImageScan:
    """What :func:`scan_images` found: ``layout`` (``flat`` or ``class_folders``), the images in file order,
    and ``skipped`` as (file, reason) pairs for everything that is not an image."""

    layout: str
    entries: list[ImageEntry]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return bool(self.entries) and all(e.true_label is not None for e in self.entries)


def _skip_reason(path: Path) -> str | None:
    """None for an image file, else why it is not read."""
    if path.name.startswith("."):
        return "hidden file"
    ext = path.suffix.lower()
    if ext in _STILL:
        return None
    if ext in _REFUSED:
        return f"not decodable here ({_UNDECODABLE[_REFUSED[ext]]})"
    return f"not an image (extension {ext or 'none'!r} is not a format Pillow reads)"


def _walk(folder: Path, root: Path, skipped: list[tuple[str, str]]) -> list[Path]:
    images = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts[:-1]):
            continue  # inside a hidden folder, which is reported once below
        if path.is_dir():
            if path.name.startswith("."):
                skipped.append((rel.as_posix() + "/", "hidden folder"))
            continue
        reason = _skip_reason(path)
        if reason:
            skipped.append((rel.as_posix(), reason))
        else:
            images.append(path)
    return images


def _stems(files: list[str], root: Path) -> list[str]:
    """File stem, or for a stem found in several folders the relative path with ``/`` → ``__``."""
    plain = [Path(f).stem for f in files]
    counts = Counter(plain)
    stems = [s if counts[s] == 1 or "/" not in f else Path(f).with_suffix("").as_posix().replace("/", "__")
             for f, s in zip(files, plain, strict=True)]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ImageError(f"{root}: several files share the name {dup[0]!r}; outputs are keyed by name, rename one")
    return stems


def read_labels(path: str | Path) -> dict[str, int]:
    """Read a labels CSV with columns ``file,label`` into {file → class index}.

    ``file`` is the image path relative to the image folder (``chelsea.png``, ``n02123045/cat_001.JPEG``);
    ``label`` an ImageNet class index, WordNet id or name (see :func:`deepsaliency.labels.class_index`).

    Raises:
        LabelError: the file is missing, lacks the two columns, repeats a file, or a label names no class
            (one line naming the file, the row and the label).
    """
    path = Path(path)
    allowed = "a CSV file with the columns file,label"
    if not path.is_file():
        raise LabelError(f"labels: {str(path)!r} does not exist (expected {allowed})")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if not {"file", "label"} <= set(columns):
            raise LabelError(f"{path}: columns {columns} are not allowed (expected {allowed})")
        reader.fieldnames = columns
        out: dict[str, int] = {}
        for row, rec in enumerate(reader, start=2):
            file = (rec["file"] or "").strip().replace("\\", "/").removeprefix("./")
            label = (rec["label"] or "").strip()
            if not file:
                raise LabelError(f"{path}: line {row}: empty file name (expected {allowed})")
            if file in out:
                raise LabelError(f"{path}: line {row}: file {file!r} is listed twice (one label per file)")
            try:
                out[file] = class_index(label)
            except LabelError as exc:
                raise LabelError(f"{path}: line {row}: file {file!r}: {str(exc).removeprefix('label: ')}") from None
    if not out:
        raise LabelError(f"{path}: no rows (expected {allowed})")
    return out


def scan_images(images_dir: str | Path, labels: str | Path | None = None) -> ImageScan:
    """Find the images under ``images_dir`` and their true classes, before anything is decoded.

    Layouts:

    * **flat**: image files directly in ``images_dir`` (no sub-folders).
    * **class folders** (``torchvision.datasets.ImageFolder``, ImageNet): ``images_dir/<class>/**/<image>``,
      ``<class>`` an ImageNet WordNet id (``n01440764``), class index (``0``) or class name (``tench``).

    Every file that is not an image (``README.txt``, ``.DS_Store``, an extension Pillow does not decode here)
    is listed in ``skipped`` with the reason; a file with an image extension that does not decode stops
    :func:`prepare_images` later. Stems: the file stem, unless the same stem occurs in several folders, then
    ``<class>__<stem>`` (the relative path without extension, ``/`` → ``__``).

    Args:
        images_dir: the folder.
        labels: optional CSV (see :func:`read_labels`); its label wins nothing — a class folder and a CSV that
            disagree on a file are an error, and with a CSV every image needs a label.

    Raises:
        ImageError: the folder is missing or has no images, images sit both at the top and in class folders,
            a class folder is empty, two files map to the same stem.
        LabelError: a class folder name or a CSV label names no ImageNet class, the CSV lists a file that is
            not an image of the folder, or an image has no label.
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise ImageError(f"{root}: image folder does not exist")
    skipped: list[tuple[str, str]] = []
    top_images, class_dirs = [], []
    for path in sorted(root.iterdir()):
        if path.is_dir():
            if path.name.startswith("."):
                skipped.append((path.name + "/", "hidden folder"))
            else:
                class_dirs.append(path)
            continue
        reason = _skip_reason(path)
        if reason:
            skipped.append((path.name, reason))
        else:
            top_images.append(path)
    true: dict[str, int] = {}
    if class_dirs:
        if top_images:
            raise ImageError(f"{root}: images both at the top ({top_images[0].name}) and in class folders "
                             f"({class_dirs[0].name}/) are not allowed; use one layout")
        layout, paths = "class_folders", []
        for folder in class_dirs:
            try:
                idx = class_index(folder.name)
            except LabelError as exc:
                raise LabelError(f"{folder}: class folder {str(exc).removeprefix('label: ')}") from None
            found = _walk(folder, root, skipped)
            if not found:
                raise ImageError(f"{folder}: class folder holds no images (each needs at least one file Pillow "
                                 "reads as an image, e.g. .JPEG, .png)")
            paths += found
            true.update({p.relative_to(root).as_posix(): idx for p in found})
    else:
        layout, paths = "flat", top_images
    if not paths:
        raise ImageError(f"{root}: no images found (allowed extensions: {', '.join(IMAGE_EXTENSIONS)})")
    files = [p.relative_to(root).as_posix() for p in paths]
    if labels is not None:
        csv_labels = read_labels(labels)
        unknown = sorted(set(csv_labels) - set(files))
        if unknown:
            raise LabelError(f"{labels}: file {unknown[0]!r} is not an image in {root} (file is the path relative "
                             "to the image folder)")
        for f in files:
            if f not in csv_labels and f not in true:
                raise LabelError(f"{labels}: no label for {f!r} (with a labels file every image needs one)")
            if f in csv_labels and f in true and csv_labels[f] != true[f]:
                raise LabelError(f"{labels}: file {f!r}: label {csv_labels[f]} disagrees with its class folder "
                                 f"({true[f]})")
        true.update(csv_labels)
    stems = _stems(files, root)
    entries = [ImageEntry(p, f, s, true.get(f)) for p, f, s in zip(paths, files, stems, strict=True)]
    return ImageScan(layout, entries, skipped)


def list_images(directory: str | Path) -> list[Path]:
    """Image files under ``directory`` in file order (flat folder or class folders, see :func:`scan_images`)."""
    return [e.path for e in scan_images(directory).entries]


# ----------------------------------------------------------------------------------------------- sampling
SAMPLE_KEYS = ("n", "per_class", "only_correct", "seed")


def _check_sample(sample: Mapping[str, Any] | None, scan: ImageScan) -> dict[str, Any]:
    s = {"n": None, "per_class": None, "only_correct": False, "seed": 0}
    if sample is None:
        return s
    if not isinstance(sample, Mapping):
        raise ParamError(f"sample: {sample!r} is not allowed (None or a mapping with keys {', '.join(SAMPLE_KEYS)})")
    for key, value in sample.items():
        if key not in s:
            raise ParamError(f"sample.{key}: unknown key (allowed: {', '.join(SAMPLE_KEYS)})")
        s[key] = value
    for key in ("n", "per_class"):
        v = s[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ParamError(f"sample.{key}: {v!r} is not allowed (None or an integer ≥ 1)")
    if not isinstance(s["only_correct"], bool):
        raise ParamError(f"sample.only_correct: {s['only_correct']!r} is not allowed (True or False)")
    if isinstance(s["seed"], bool) or not isinstance(s["seed"], int) or s["seed"] < 0:
        raise ParamError(f"sample.seed: {s['seed']!r} is not allowed (an integer ≥ 0)")
    for key in ("per_class", "only_correct"):
        if s[key] and not scan.labelled:
            raise ParamError(f"sample.{key}: {s[key]!r} needs true labels (class folders or a labels file), "
                             "and these images have none")
    return s


def _batches(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i: i + size]


def prepare_images(images_dir: str | Path, out_dir: str | Path, model, resize: str = "stretch",
                   labels: str | Path | None = None, sample: Mapping[str, Any] | None = None,
                   batch_size: int = BATCH_SIZE, log: Callable[[str], None] | None = print):
    """Resize every (or a seeded sample of the) image(s) to the model's input size and classify them.

    Reads ``images_dir`` as :func:`scan_images` describes and writes ``<stem>.png`` (RGB, H×W of the model)
    per image and ``manifest.csv`` into ``out_dir``. The manifest has the columns ``file`` (path relative to
    ``images_dir``), ``stem``, ``class_idx``, ``label``, ``prob`` (the model's top-1 class, name and softmax
    probability), and when true labels exist ``true_label`` (ImageNet index) and ``correct`` (top-1 hit),
    rows in file order. Images are decoded, resized, classified (``model.classify``) and written
    ``batch_size`` at a time, so peak memory does not grow with the number of images.

    Args:
        images_dir: a flat folder or class folders.
        out_dir: an existing folder (the stage passes an atomic temporary one: a failure leaves nothing).
        model: a :class:`~deepsaliency.Model`.
        resize: ``stretch`` or ``center_crop``.
        labels: optional labels CSV (``file,label``).
        sample: optional mapping ``n`` (None or int ≥ 1: at most this many images), ``per_class`` (None or
            int ≥ 1: at most this many per true class), ``only_correct`` (keep only images the model
            classifies correctly, as most saliency studies do) and ``seed`` (int ≥ 0). Candidates are visited
            in the order of a permutation drawn with ``seed``: the same seed gives the same subset.
        batch_size: images per decode/classify/write step.
        log: receives one line per skipped file, per multi-frame file (its first frame is used) and a
            summary of the sample; None to stay silent.

    Returns:
        The manifest as a pandas DataFrame.

    Raises:
        ImageError: as :func:`scan_images`, or an image file that does not decode (named).
        LabelError: as :func:`scan_images`.
        ParamError: a bad ``sample`` value, or ``per_class`` / ``only_correct`` without true labels.
    """
    import pandas as pd

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParamError(f"batch_size: {batch_size!r} is not allowed (an integer ≥ 1)")
    say = log or (lambda line: None)
    scan = scan_images(images_dir, labels)
    s = _check_sample(sample, scan)
    for file, reason in scan.skipped:
        say(f"skipped {file}: {reason}")
    entries = scan.entries
    sampling = s["n"] is not None or s["per_class"] is not None or s["only_correct"]
    if sampling:
        entries = [entries[i] for i in np.random.default_rng(s["seed"]).permutation(len(entries))]
    out_dir = Path(out_dir)
    rows: list[dict[str, Any]] = []
    taken: Counter = Counter()

    def room(e: ImageEntry) -> bool:
        return ((s["n"] is None or len(rows) < s["n"])
                and (s["per_class"] is None or taken[e.true_label] < s["per_class"]))

    def process(batch: list[ImageEntry]) -> None:
        arrays = []
        for e in batch:
            rgb, frames = _decode(e.path)
            if frames > 1:
                say(f"note {e.file}: {frames} frames, the first was prepared")
            arrays.append(resize_image(rgb, model.input_size, resize))
        x = torch.cat([to_tensor(a) for a in arrays]).to(model.device)
        with torch.inference_mode():
            pred = model.classify(x)
        for e, a, idx, label, prob in zip(batch, arrays, pred.indices, pred.labels, pred.probabilities, strict=True):
            if s["only_correct"] and idx != e.true_label:
                continue
            if not room(e):
                continue
            Image.fromarray(a).save(out_dir / f"{e.stem}.png")
            row = {"file": e.file, "stem": e.stem, "class_idx": idx, "label": label, "prob": round(prob, 6)}
            if scan.labelled:
                row.update(true_label=e.true_label, correct=idx == e.true_label)
            rows.append(row)
            taken[e.true_label] += 1

    if s["only_correct"]:
        # Whether an image counts is known only after classifying it: visit candidates batch by batch.
        pending = deque(entries)
        while pending and (s["n"] is None or len(rows) < s["n"]):
            batch: list[ImageEntry] = []
            while pending and len(batch) < batch_size:
                e = pending.popleft()
                if room(e):
                    batch.append(e)
            if batch:
                process(batch)
    else:
        chosen: list[ImageEntry] = []
        count: Counter = Counter()
        for e in entries:
            full = s["per_class"] is not None and count[e.true_label] >= s["per_class"]
            if (s["n"] is None or len(chosen) < s["n"]) and not full:
                chosen.append(e)
                count[e.true_label] += 1
        chosen.sort(key=lambda e: e.file)
        for batch in _batches(chosen, batch_size):
            process(batch)
    if not rows:
        raise ImageError(f"{images_dir}: the sample is empty (no image is classified correctly)")
    rows.sort(key=lambda r: r["file"])
    columns = list(MANIFEST_COLUMNS) + (list(LABEL_COLUMNS) if scan.labelled else [])
    manifest = pd.DataFrame(rows, columns=columns)
    if sampling:
        say(f"sample: {len(rows)} of {len(scan.entries)} images (seed {s['seed']}, n {s['n']}, per_class "
            f"{s['per_class']}, only_correct {s['only_correct']})")
    manifest.to_csv(out_dir / "manifest.csv", index=False)
    return manifest
