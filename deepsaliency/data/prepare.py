"""The prepare pipeline: every (or a seeded sample of the) input image(s), resized, classified and written.

Images are decoded, resized, classified and written ``batch_size`` at a time, so memory does not grow with
the number of images.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from .._validate import check_bool, check_int
from ..errors import ImageError, ParamError
from ..shards import shard_name, shard_of
from .folders import ImageEntry, ImageScan, scan_images
from .pixels import read_frames, resize_image, to_tensor

if TYPE_CHECKING:
    import pandas as pd

BATCH_SIZE = 32
MANIFEST_COLUMNS = ("file", "stem", "class_idx", "label", "prob", "shard")
LABEL_COLUMNS = ("true_label", "correct")
SAMPLE_KEYS = ("n", "per_class", "only_correct", "seed")


def check_sample(sample: Mapping[str, Any] | None, scan: ImageScan) -> dict[str, Any]:
    """``sample`` (see :func:`prepare_images`) with every key filled in, checked against the scanned images.

    Raises:
        ParamError: not a mapping, an unknown key, a value out of range, or ``per_class`` / ``only_correct``
            for images without true labels; the message names ``sample.<key>``.
    """
    s: dict[str, Any] = {"n": None, "per_class": None, "only_correct": False, "seed": 0}
    if sample is None:
        return s
    if not isinstance(sample, Mapping):
        raise ParamError(f"sample: {sample!r} is not allowed (None or a mapping with keys {', '.join(SAMPLE_KEYS)})")
    for key, value in sample.items():
        if key not in s:
            raise ParamError(f"sample.{key}: unknown key (allowed: {', '.join(SAMPLE_KEYS)})")
        s[key] = value
    for key in ("n", "per_class"):
        if s[key] is not None:
            check_int(s[key], f"sample.{key}", 1, allowed="None or an integer ≥ 1")
    check_bool(s["only_correct"], "sample.only_correct")
    check_int(s["seed"], "sample.seed", 0)
    for key in ("per_class", "only_correct"):
        if s[key] and not scan.labelled:
            raise ParamError(
                f"sample.{key}: {s[key]!r} needs true labels (class folders or a labels file), "
                "and these images have none"
            )
    return s


_check_sample = check_sample  # the name stages imported before it was public


def _batches(items: list[ImageEntry], size: int) -> Iterable[list[ImageEntry]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class _Writer:
    """Decodes, classifies and writes batches of images; keeps the manifest rows within the sample's limits."""

    model: Any
    resize: str
    out_dir: Path
    sample: dict[str, Any]
    labelled: bool
    say: Callable[[str], None]
    shards: int = 1
    rows: list[dict[str, Any]] = field(default_factory=list)
    taken: Counter[int | None] = field(default_factory=Counter)

    def full(self) -> bool:
        return self.sample["n"] is not None and len(self.rows) >= self.sample["n"]

    def room(self, e: ImageEntry) -> bool:
        per_class = self.sample["per_class"]
        return not self.full() and (per_class is None or self.taken[e.true_label] < per_class)

    def process(self, batch: list[ImageEntry]) -> None:
        arrays = []
        for e in batch:
            rgb, frames = read_frames(e.path)
            if frames > 1:
                self.say(f"note {e.file}: {frames} frames, the first was prepared")
            arrays.append(resize_image(rgb, self.model.input_size, self.resize))
        # One image per forward pass: a batch's composition changes the float result in its last bits, and a
        # shard's manifest must not change when an image of another shard comes or goes.
        with torch.inference_mode():
            preds = [self.model.classify(to_tensor(a).to(self.model.device)) for a in arrays]
        for e, a, pred in zip(batch, arrays, preds, strict=True):
            idx, label, prob = pred.indices[0], pred.labels[0], pred.probabilities[0]
            if self.sample["only_correct"] and idx != e.true_label:
                continue
            if not self.room(e):
                continue
            shard = shard_of(e.stem, self.shards)
            Image.fromarray(a).save(self.out_dir / shard_name(shard) / f"{e.stem}.png")
            row = {"file": e.file, "stem": e.stem, "class_idx": idx, "label": label, "prob": round(prob, 6)}
            row["shard"] = shard
            if self.labelled:
                row.update(true_label=e.true_label, correct=idx == e.true_label)
            self.rows.append(row)
            self.taken[e.true_label] += 1


def _until_full(entries: list[ImageEntry], writer: _Writer, batch_size: int) -> None:
    """Whether an image counts is known only after classifying it: visit candidates batch by batch."""
    pending = deque(entries)
    while pending and not writer.full():
        batch: list[ImageEntry] = []
        while pending and len(batch) < batch_size:
            e = pending.popleft()
            if writer.room(e):
                batch.append(e)
        if batch:
            writer.process(batch)


def _chosen(entries: list[ImageEntry], s: dict[str, Any]) -> list[ImageEntry]:
    """The first entries within the sample's ``n`` and ``per_class`` limits, in file order."""
    chosen: list[ImageEntry] = []
    count: Counter[int | None] = Counter()
    for e in entries:
        full = s["per_class"] is not None and count[e.true_label] >= s["per_class"]
        if (s["n"] is None or len(chosen) < s["n"]) and not full:
            chosen.append(e)
            count[e.true_label] += 1
    return sorted(chosen, key=lambda e: e.file)


def prepare_images(
    images_dir: str | Path,
    out_dir: str | Path,
    model: Any,
    resize: str = "stretch",
    labels: str | Path | None = None,
    sample: Mapping[str, Any] | None = None,
    batch_size: int = BATCH_SIZE,
    log: Callable[[str], None] | None = print,
    shards: int = 1,
) -> pd.DataFrame:
    """Resize every (or a seeded sample of the) image(s) to the model's input size and classify them.

    Reads ``images_dir`` as :func:`scan_images` describes and writes ``<stem>.png`` (RGB, H×W of the model)
    per image into its shard's folder ``shard-<k>/`` (:func:`deepsaliency.shards.shard_of`: a hash of the stem)
    with that shard's ``manifest.csv``, and every image's ``manifest.csv`` into ``out_dir``. The manifest has the
    columns ``file`` (path relative to ``images_dir``), ``stem``, ``class_idx``, ``label``, ``prob`` (the
    model's top-1 class, name and softmax probability, each image classified alone), ``shard``, and when true
    labels exist ``true_label`` (ImageNet index) and ``correct`` (top-1 hit), rows in file order. Images are
    decoded, resized, classified (``model.classify``) and written ``batch_size`` at a time, so peak memory does
    not grow with the number of images.

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
        shards: the number of shards, ≥ 1 and at most the number of images prepared.

    Returns:
        The manifest as a pandas DataFrame (one row per image written).

    Raises:
        ImageError: as :func:`scan_images`, or an image file that does not decode (named).
        LabelError: as :func:`scan_images`.
        ParamError: a bad ``batch_size`` or ``sample`` value, ``per_class`` / ``only_correct`` without true
            labels, or more ``shards`` than images.
    """
    import pandas as pd

    batch_size = check_int(batch_size, "batch_size", 1)
    shards = check_int(shards, "shards", 1)
    say = log or (lambda line: None)
    scan = scan_images(images_dir, labels)
    s = check_sample(sample, scan)
    for file, reason in scan.skipped:
        say(f"skipped {file}: {reason}")
    entries = scan.entries
    sampling = s["n"] is not None or s["per_class"] is not None or s["only_correct"]
    if sampling:
        entries = [entries[i] for i in np.random.default_rng(s["seed"]).permutation(len(entries))]
    writer = _Writer(model, resize, Path(out_dir), s, scan.labelled, say, shards)
    for k in range(shards):
        (writer.out_dir / shard_name(k)).mkdir(exist_ok=True)
    if s["only_correct"]:
        _until_full(entries, writer, batch_size)
    else:
        for batch in _batches(_chosen(entries, s), batch_size):
            writer.process(batch)
    rows = sorted(writer.rows, key=lambda r: r["file"])
    if not rows:
        raise ImageError(f"{images_dir}: the sample is empty (no image is classified correctly)")
    if shards > len(rows):
        raise ParamError(f"shards: {shards} is not allowed (at most the number of images prepared, {len(rows)})")
    columns = list(MANIFEST_COLUMNS) + (list(LABEL_COLUMNS) if scan.labelled else [])
    manifest = pd.DataFrame(rows, columns=columns)
    if sampling:
        say(
            f"sample: {len(rows)} of {len(scan.entries)} images (seed {s['seed']}, n {s['n']}, per_class "
            f"{s['per_class']}, only_correct {s['only_correct']})"
        )
    manifest.to_csv(writer.out_dir / "manifest.csv", index=False)
    for k in range(shards):
        part = manifest[manifest["shard"] == k]
        part.to_csv(writer.out_dir / shard_name(k) / "manifest.csv", index=False)
        if part.empty:
            say(f"{shard_name(k)}: no image falls in this shard (the split is a hash of the file name)")
    return manifest
