"""Test helpers shared by several test modules: the one tiny test network and its inputs, and running a
stage script in a copy of the project."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from deepsaliency.models import Model


def tiny_layers() -> nn.Sequential:
    """Seeded layers of a small 5-class classifier on ImageNet-normalised-like input.

    It has every kind of layer the attack's network surgery touches or must leave alone: ReLU,
    ReLU6, LeakyReLU, batch norm with running statistics, dropout, a depthwise and a 1×1 convolution.
    """
    g = torch.Generator().manual_seed(0)
    layers = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),
        nn.BatchNorm2d(8),
        nn.ReLU6(inplace=True),
        nn.Conv2d(8, 16, 1),
        nn.LeakyReLU(0.1),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(256, 5),
    )
    for p in layers.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.5
    for m in layers.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.2, 0.2, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
    return layers


class TinyNet(nn.Module):
    """:func:`tiny_layers` as a pixel-space classifier (x ↦ layers(4x − 2)), frozen, in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.features = tiny_layers()
        self.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x * 4.0 - 2.0)


def tiny_model(size: int = 24) -> Model:
    """The same layers in a :class:`~deepsaliency.models.Model` (mean 0.5, std 0.25: the same function)."""
    return Model(
        tiny_layers(),
        input_size=(size, size),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        labels=list("abcde"),
        name="small",
    )


def images(n: int = 2, size: int = 24) -> torch.Tensor:
    """``n`` seeded random images (n, 3, size, size) in [0, 1]."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, size, size, generator=g)


def corner_map(n: int, size: int = 24) -> torch.Tensor:
    """``n`` target maps (n, size, size): 1 on the top-left ninth, 0.05 elsewhere."""
    m = torch.full((n, size, size), 0.05)
    m[:, : size // 3, : size // 3] = 1.0
    return m


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def run_stage(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``python <args>`` in ``project`` (a copy of the repo's stages and params), output captured, warnings off;
    ``env`` adds variables (e.g. ``PYTHONPATH`` to import the checkout's library, ``OMP_NUM_THREADS``)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore", **env),
    )


def run_stage_in_process(
    project: Path, script: str, *args: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> subprocess.CompletedProcess:
    """``python <script> <args>`` in ``project``, but in this process: the same exit status and output as
    :func:`run_stage` without a Python start and torch/Captum imports (≈ 4 s each on 2 cores).

    The script runs as ``__main__``, so its own ``run_stage(main)`` turns a DeepSaliencyError into one line on
    stderr and exit 2; any other exception propagates with its traceback (a subprocess would exit 1).
    """
    capsys.readouterr()  # what the test printed before is not the stage's output
    with monkeypatch.context() as m:
        m.chdir(project)
        m.setattr(sys, "argv", [script, *args])
        try:
            runpy.run_path(str(project / script), run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess([sys.executable, script, *args], code, out, err)
