"""Finding the input images: a flat folder or ``torchvision.datasets.ImageFolder`` class folders, and labels.

Nothing here decodes pixels (see :mod:`deepsaliency.data.pixels`): a scan lists the image files by extension,
their output stems and their true ImageNet classes, and names everything it skips.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ImageError
from ..labels import LabelError, class_index
from .pixels import _REFUSED, _STILL, _UNDECODABLE, IMAGE_EXTENSIONS


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
    stems = [
        s if counts[s] == 1 or "/" not in f else Path(f).with_suffix("").as_posix().replace("/", "__")
        for f, s in zip(files, plain, strict=True)
    ]
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
    top_images, class_dirs = _top_level(root, skipped)
    true: dict[str, int] = {}
    if class_dirs:
        if top_images:
            raise ImageError(
                f"{root}: images both at the top ({top_images[0].name}) and in class folders "
                f"({class_dirs[0].name}/) are not allowed; use one layout"
            )
        layout, paths = "class_folders", _class_folder_images(root, class_dirs, skipped, true)
    else:
        layout, paths = "flat", top_images
    if not paths:
        raise ImageError(f"{root}: no images found (allowed extensions: {', '.join(IMAGE_EXTENSIONS)})")
    files = [p.relative_to(root).as_posix() for p in paths]
    if labels is not None:
        true.update(_csv_labels(labels, root, files, true))
    stems = _stems(files, root)
    entries = [ImageEntry(p, f, s, true.get(f)) for p, f, s in zip(paths, files, stems, strict=True)]
    return ImageScan(layout, entries, skipped)


def _top_level(root: Path, skipped: list[tuple[str, str]]) -> tuple[list[Path], list[Path]]:
    """(images, class folders) directly in ``root``; hidden folders and non-images go to ``skipped``."""
    top_images: list[Path] = []
    class_dirs: list[Path] = []
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
    return top_images, class_dirs


def _class_folder_images(
    root: Path, class_dirs: list[Path], skipped: list[tuple[str, str]], true: dict[str, int]
) -> list[Path]:
    """The images of every class folder, in order; ``true`` receives {file: class index of its folder}."""
    paths: list[Path] = []
    for folder in class_dirs:
        try:
            idx = class_index(folder.name)
        except LabelError as exc:
            raise LabelError(f"{folder}: class folder {str(exc).removeprefix('label: ')}") from None
        found = _walk(folder, root, skipped)
        if not found:
            raise ImageError(
                f"{folder}: class folder holds no images (each needs at least one file Pillow "
                "reads as an image, e.g. .JPEG, .png)"
            )
        paths += found
        true.update({p.relative_to(root).as_posix(): idx for p in found})
    return paths


def _csv_labels(labels: str | Path, root: Path, files: list[str], true: dict[str, int]) -> dict[str, int]:
    """The labels CSV's {file: class}, checked against the images found and their class folders (``true``)."""
    csv_labels = read_labels(labels)
    unknown = sorted(set(csv_labels) - set(files))
    if unknown:
        raise LabelError(
            f"{labels}: file {unknown[0]!r} is not an image in {root} (file is the path relative to the image folder)"
        )
    for f in files:
        if f not in csv_labels and f not in true:
            raise LabelError(f"{labels}: no label for {f!r} (with a labels file every image needs one)")
        if f in csv_labels and f in true and csv_labels[f] != true[f]:
            raise LabelError(f"{labels}: file {f!r}: label {csv_labels[f]} disagrees with its class folder ({true[f]})")
    return csv_labels


def list_images(directory: str | Path) -> list[Path]:
    """Image files under ``directory`` in file order (flat folder or class folders, see :func:`scan_images`)."""
    return [e.path for e in scan_images(directory).entries]
