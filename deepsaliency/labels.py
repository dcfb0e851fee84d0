"""ImageNet-1k class lookup: index ↔ WordNet id ↔ name, from the metadata that ships with timm.

:class:`timm.data.ImageNetInfo` carries the 1000 WordNet synset ids of ImageNet-1k in class-index order
(the order every ImageNet classifier uses) and the WordNet lemmas of each synset (Russakovsky et al.,
*ImageNet Large Scale Visual Recognition Challenge*, IJCV 2015; Miller, *WordNet*, CACM 1995). Nothing
here is typed by hand and nothing is downloaded.

A label may be given as

* a class index, ``285`` or ``"285"`` (0 ≤ index < 1000);
* a WordNet id, ``"n02124075"``;
* a class name: the full lemma list (``"tabby, tabby cat"``) or any single lemma (``"tabby cat"``),
  case-insensitive. A lemma shared by several classes (``"crane"``, ``"missile"``, ``"maillot"``, …)
  is refused with the candidates listed, so that no label silently picks one of them.
"""

from __future__ import annotations

from functools import lru_cache

from .errors import DeepSaliencyError


class LabelError(DeepSaliencyError):
    """A true label (class folder name or labels-file entry) names no ImageNet class, or several."""


@lru_cache(maxsize=1)
def _info():
    from timm.data import ImageNetInfo

    return ImageNetInfo("imagenet-1k")


def num_classes() -> int:
    """Number of ImageNet-1k classes (1000)."""
    return _info().num_classes()


def wordnet_ids() -> list[str]:
    """The 1000 WordNet ids (``n01440764`` …) in class-index order."""
    return list(_info().label_names())


def descriptions() -> list[str]:
    """The 1000 class names as WordNet lemma lists (``"tench, Tinca tinca"`` …) in class-index order."""
    return list(_info().label_descriptions())


def wordnet_id(index: int) -> str:
    """WordNet id of class ``index``.

    Raises:
        LabelError: ``index`` is not in [0, 999].
    """
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < num_classes():
        raise LabelError(f"index: {index!r} is not allowed (a class index in [0, {num_classes() - 1}])")
    return wordnet_ids()[index]


def description(index: int) -> str:
    """Lemma list of class ``index`` (e.g. 281 → ``"tabby, tabby cat"``); raises :class:`LabelError` as
    :func:`wordnet_id`."""
    wordnet_id(index)
    return descriptions()[index]


@lru_cache(maxsize=1)
def _lookup() -> tuple[dict[str, int], dict[str, int], dict[str, list[int]]]:
    wnid = {w: i for i, w in enumerate(wordnet_ids())}
    full: dict[str, list[int]] = {}
    lemma: dict[str, list[int]] = {}
    for i, desc in enumerate(descriptions()):
        full.setdefault(desc.lower(), []).append(i)
        for word in desc.split(", "):
            lemma.setdefault(word.strip().lower(), []).append(i)
    unique_full = {k: v[0] for k, v in full.items() if len(v) == 1}
    # A full lemma list that is unique wins over a lemma it contains; ambiguous lemmas stay lists.
    return wnid, unique_full, lemma


def class_index(label: int | str) -> int:
    """The ImageNet class index that ``label`` names.

    Args:
        label: an index (int or decimal string, 0–999), a WordNet id (``n`` + 8 digits) or a class name
            (full lemma list or one lemma, case-insensitive; surrounding blanks are ignored).

    Returns:
        The class index in [0, 999].

    Raises:
        LabelError: the label names no class, or a lemma that several classes share (one line, the
            candidates listed).
    """
    allowed = "a class index in [0, 999], a WordNet id such as n01440764 or a class name such as 'tabby cat'"
    if isinstance(label, bool) or not isinstance(label, (int, str)):
        raise LabelError(f"label: {label!r} is not allowed ({allowed})")
    if isinstance(label, int):
        if 0 <= label < num_classes():
            return label
        raise LabelError(f"label: {label!r} is not allowed ({allowed})")
    text = label.strip()
    if text.isdigit():
        return class_index(int(text)) if int(text) < num_classes() else _refuse(label, allowed)
    wnid, full, lemma = _lookup()
    if text in wnid:
        return wnid[text]
    key = text.lower()
    if key in full:
        return full[key]
    hits = lemma.get(key, [])
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        options = "; ".join(f"{i} {wordnet_ids()[i]} '{descriptions()[i]}'" for i in hits)
        raise LabelError(f"label: {label!r} names several classes ({options}); use the index or the WordNet id")
    return _refuse(label, allowed)


def _refuse(label: str, allowed: str) -> int:
    raise LabelError(f"label: {label!r} is not an ImageNet class ({allowed})")
