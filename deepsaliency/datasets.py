"""A small labelled ImageFolder of real photos, for tests and demos where no ImageNet is at hand.

The photos ship with installed packages (scikit-image's data folder, matplotlib's sample data), so nothing
is downloaded. Each photo's true ImageNet class was chosen from what the photo shows, by the class's
WordNet name and definition in :class:`timm.data.ImageNetInfo`, not from what the model predicts:

============================  ================  =============================================================
photo                         class             why
============================  ================  =============================================================
``chelsea`` (scikit-image)    tabby cat (281)   Chelsea is an orange tabby ("a cat with a grey or tawny coat
                                                mottled with black"); the model says Egyptian cat (285)
``coffee`` (scikit-image)     espresso (967)    a cup of espresso from Pikolo Espresso Bar (scikit-image doc)
``rocket`` (scikit-image)     missile (657)     a Falcon 9 launch: ImageNet-1k has no launch-vehicle class;
                                                "missile" (a rocket …) is the nearest; "projectile, missile"
                                                (744) is defined as not self-propelled
``motorcycle_left``           moped (665)       a motorcycle: ImageNet-1k has no plain motorcycle class;
(scikit-image)                                  "moped" (a motorbike …) is the nearest
``grace_hopper`` (matplotlib)  military uniform  Grace Hopper in US Navy uniform
                              (652)
============================  ================  =============================================================

Left out, because no ImageNet-1k class names what they show: ``astronaut`` (a portrait in a space suit),
``hubble_deep_field`` (galaxies), ``retina`` (a fundus photograph) and ``ihc`` (a stained tissue slide).

Enlarging is by seeded random crops and horizontal flips (the usual ImageNet augmentations), so larger
folders are still real photos, and the same seed writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .labels import class_index, wordnet_id

#: photo → (where it ships, the class name or WordNet id that :func:`deepsaliency.labels.class_index` resolves)
PHOTOS: dict[str, tuple[str, str]] = {
    "chelsea": ("skimage:chelsea.png", "tabby cat"),
    "coffee": ("skimage:coffee.png", "espresso"),
    "rocket": ("skimage:rocket.jpg", "missile"),  # the full name 'missile' is class 657's alone
    "motorcycle_left": ("skimage:motorcycle_left.png", "moped"),
    "grace_hopper": ("matplotlib:grace_hopper.jpg", "military uniform"),
}


def photo_path(photo: str) -> Path:
    """Path of one of :data:`PHOTOS` inside its installed package."""
    where, name = PHOTOS[photo][0].split(":")
    if where == "skimage":
        import skimage.data

        return Path(skimage.data.__file__).parent / name
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data(name, asfileobj=False))


def make_real_photo_folder(
    root: str | Path, copies_per_photo: int = 1, seed: int = 0, min_crop: float = 0.6, quality: int = 92
):
    """Write the photos of :data:`PHOTOS` as an ImageNet-style ImageFolder: ``root/<wnid>/<photo>_<k>.JPEG``.

    Copy 0 of each photo is the whole photo; copies 1 … ``copies_per_photo`` − 1 are random crops (each side
    a fraction in [``min_crop``, 1] of the photo's, at a random position) flipped left–right with
    probability 0.5, drawn from ``numpy.random.default_rng(seed)``.

    Args:
        root: the folder to create (it may exist; files of the same names are overwritten).
        copies_per_photo: images per photo (≥ 1); the folder holds ``5 · copies_per_photo`` images.
        seed: seed of the crops and flips.
        min_crop: smallest crop side as a fraction of the photo's side, in (0, 1].
        quality: JPEG quality (1–95).

    Returns:
        A pandas DataFrame, one row per written image: ``file`` (relative to ``root``), ``label`` (ImageNet
        class index), ``wnid``, ``photo``, ``flipped`` and the crop box ``left, top, width, height`` in pixels
        of the original photo. ``df[["file", "label"]].to_csv(...)`` is a labels file for ``prepare.labels``.

    Raises:
        ParamError: ``copies_per_photo`` < 1, ``min_crop`` outside (0, 1] or ``quality`` outside [1, 95].
    """
    import pandas as pd

    from ._validate import check_float, check_int

    check_int(copies_per_photo, "copies_per_photo", 1)
    check_float(min_crop, "min_crop", 0, 1, low_open=True, allowed="a number in (0, 1]")
    check_int(quality, "quality", 1, 95)
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for photo, (_, name) in PHOTOS.items():
        idx = class_index(name)
        wnid = wordnet_id(idx)
        (root / wnid).mkdir(parents=True, exist_ok=True)
        with Image.open(photo_path(photo)) as img:
            full = img.convert("RGB")
        for k in range(copies_per_photo):
            if k == 0:
                left, top, w, h, flip = 0, 0, full.width, full.height, False
            else:
                w = int(round(full.width * rng.uniform(min_crop, 1.0)))
                h = int(round(full.height * rng.uniform(min_crop, 1.0)))
                left = int(rng.integers(0, full.width - w + 1))
                top = int(rng.integers(0, full.height - h + 1))
                flip = bool(rng.random() < 0.5)
            out = full.crop((left, top, left + w, top + h))
            if flip:
                out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            file = f"{wnid}/{photo}_{k:03d}.JPEG"
            out.save(root / file, quality=quality)
            rows.append(
                {
                    "file": file,
                    "label": idx,
                    "wnid": wnid,
                    "photo": photo,
                    "flipped": flip,
                    "left": left,
                    "top": top,
                    "width": w,
                    "height": h,
                }
            )
    return pd.DataFrame(rows)
