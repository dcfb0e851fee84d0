"""Issue 12.9: the calls the original project documents run as written and do the documented thing.

model = Model().to(device)
img, x = load_img(path, model)
masks = generate_masks(N=2000, s=8, p1=0.5, input_size=model.input_size)
saliency_map = explain(model, x, masks, N=2000, batch_size=32, p1=0.5)
x_adv, adv_expl = perform_attack(model, x, exp_method="integrated_gradients", num_iter=100)
plot_comparison(original_image, org_expl, colormap="seismic", title_original="Original Image",
                title_explanation="Saliency Map")
ssim, mse, psnr = compute_metrics(org_expl, adv_expl)
"""

import numpy as np
import pytest
import torch
from conftest import SAMPLES

from deepsaliency import (
    Model,
    attribute,
    compute_metrics,
    explain,
    generate_masks,
    load_img,
    perform_attack,
    plot_comparison,
    reduce_map,
)
from deepsaliency.metrics.similarity import top_k_intersection

device = "cpu"


@pytest.fixture(scope="module")
def seed_model():
    return Model().to(device)  # the seed's call: no arguments


@pytest.mark.slow
def test_model_without_arguments_is_the_embedded_default(seed_model, model, samples):
    assert seed_model.name == "efficientnet_lite0" and seed_model.input_size == (224, 224)
    assert len(seed_model.labels) == 1000 and not seed_model.training
    assert not any(p.requires_grad for p in seed_model.parameters())
    x = samples["chelsea"]
    with torch.no_grad():
        torch.testing.assert_close(seed_model(x), model(x))  # the same network as load_model()
    pred = seed_model.classify(x)
    assert pred.labels == ["Egyptian cat"] and pred.probabilities[0] == pytest.approx(0.54, abs=0.01)


@pytest.mark.slow
def test_untargeted_perform_attack_moves_the_real_map_and_keeps_the_class(seed_model):
    """``perform_attack`` without a target on the real model (saliency, a few steps: the fast variant of the
    seed's integrated-gradients call, which the slow test below runs as written)."""
    model = seed_model
    img, x = load_img(SAMPLES / "coffee.png", model)
    cls = model.classify(x).indices[0]
    x_adv, adv_expl = perform_attack(model, x, exp_method="saliency", num_iter=10, eval_every=5)
    assert model.classify(x_adv).indices[0] == cls
    assert float((x_adv - x).abs().max()) <= 8 / 255 + 1e-6  # the documented default budget
    org = reduce_map(attribute(model, x, "saliency", cls), "saliency")[0].numpy()
    adv = reduce_map(attribute(model, x_adv, "saliency", cls), "saliency")[0].numpy()
    np.testing.assert_allclose(adv / adv.sum(), adv_expl[0].numpy(), rtol=1e-3, atol=1e-7)
    assert top_k_intersection(org, adv, 1000) < 0.5


@pytest.mark.slow
def test_the_seed_script_runs_as_written(seed_model):
    model = seed_model
    img, x = load_img(SAMPLES / "chelsea.png", model)
    masks = generate_masks(N=2000, s=8, p1=0.5, input_size=model.input_size)
    saliency_map = explain(model, x, masks, N=2000, batch_size=32, p1=0.5)
    assert tuple(saliency_map.shape) == (1000, *model.input_size)
    # Σ_c S_c = Σ_i (Σ_c p_c(x ⊙ M_i)) · M_i / (N · p1) = mean_i M_i / p1: softmax sums to 1.
    mask_mean = sum(masks.dense(i, i + 250).sum(0)[0] for i in range(0, 2000, 250)) / 2000
    torch.testing.assert_close(saliency_map.sum(0), mask_mean / 0.5, rtol=1e-3, atol=1e-3)

    cls = model.classify(x).indices[0]
    x_adv, adv_expl = perform_attack(model, x, exp_method="integrated_gradients", num_iter=100)
    assert model.classify(x_adv).indices[0] == cls and float((x_adv - x).abs().max()) > 0
    # The map really moved: compare full integrated-gradients maps (Captum, 32 path points).
    org_expl = reduce_map(attribute(model, x, "integrated_gradients", cls, n_steps=32), "integrated_gradients")[
        0
    ].numpy()
    adv_full = reduce_map(attribute(model, x_adv, "integrated_gradients", cls, n_steps=32), "integrated_gradients")[
        0
    ].numpy()
    assert top_k_intersection(org_expl, adv_full, 1000) < 0.5

    fig = plot_comparison(
        img, org_expl, colormap="seismic", title_original="Original Image", title_explanation="Saliency Map"
    )
    assert [ax.get_title() for ax in fig.axes[:2]] == ["Original Image", "Saliency Map"]
    ssim, mse, psnr = compute_metrics(org_expl, adv_expl[0])
    assert 0 < mse and ssim < 0.9 and psnr < 100
