"""Reading user images robustly and turning them into model-ready tensors, and the prepare pipeline.

* :mod:`.pixels`: decoding one file (every still image Pillow decodes, whatever its pixel mode) to RGB uint8,
  resizing, and the tensor conversions;
* :mod:`.folders`: finding the images of a flat folder or a ``torchvision.datasets.ImageFolder`` layout
  (class folders), optionally with a labels CSV, before anything is decoded;
* :mod:`.prepare`: :func:`prepare_images`, a seeded sample of them resized, classified and written in
  batches, so memory does not grow with the number of images.

Every name stays importable from ``deepsaliency.data``.
"""

from .folders import ImageEntry, ImageScan, list_images, read_labels, scan_images
from .pixels import (
    IMAGE_EXTENSIONS,
    RESIZE_MODES,
    load_img,
    read_frames,
    read_rgb,
    resize_image,
    to_image,
    to_rgb,
    to_tensor,
)
from .prepare import (
    BATCH_SIZE,
    LABEL_COLUMNS,
    MANIFEST_COLUMNS,
    SAMPLE_KEYS,
    _check_sample,
    check_sample,
    prepare_images,
)

__all__ = [
    "BATCH_SIZE",
    "IMAGE_EXTENSIONS",
    "LABEL_COLUMNS",
    "MANIFEST_COLUMNS",
    "RESIZE_MODES",
    "SAMPLE_KEYS",
    "ImageEntry",
    "ImageScan",
    "_check_sample",
    "check_sample",
    "list_images",
    "load_img",
    "prepare_images",
    "read_frames",
    "read_labels",
    "read_rgb",
    "resize_image",
    "scan_images",
    "to_image",
    "to_rgb",
    "to_tensor",
]
