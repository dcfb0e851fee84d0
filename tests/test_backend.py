"""Local and Ray backends: same results byte for byte, in order; a killed Ray worker is retried."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepsaliency.backend import Compute, map_batches
from deepsaliency.errors import ParamError
from deepsaliency.shards import batched, shard_of, split

SPEC = {"name": "efficientnet_lite0", "device": "cpu"}


def saliency_task(model, batch):
    """Saliency maps of a batch of images (B, 3, H, W) as float32 numpy."""
    from deepsaliency.attribution import attribute

    return attribute(model, batch, "saliency").numpy()


def dying_saliency_task(model, payload):
    """Like saliency_task, but the first call with ``payload[1] == 1`` kills its worker process."""
    batch, index, marker = payload
    if index == 1 and not Path(marker).exists():
        Path(marker).write_text("killed once")
        os._exit(1)  # the worker process dies mid-stage, as on a lost node
    return saliency_task(model, batch)


@pytest.fixture(scope="module")
def photos(samples):
    return torch.cat([samples[k] for k in sorted(samples)])


@pytest.fixture(scope="module")
def ray_session():
    pytest.importorskip("ray")
    import ray.cloudpickle  # binds ``ray`` too

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    yield ray
    ray.shutdown()


def test_shards_are_stable_when_images_come_and_go():
    names = [f"img{i:03d}" for i in range(200)]
    before = {n: shard_of(n, 4) for n in names}
    after = {n: shard_of(n, 4) for n in [*names, "new_image"]}
    assert all(before[n] == after[n] for n in names)  # adding one image moves nobody else
    sizes = [len(v) for v in split(names, 4).values()]
    assert sum(sizes) == 200 and min(sizes) >= 30  # a hash, not everything in one shard
    assert [list(b) for b in batched(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.slow
def test_ray_gives_the_local_bytes_and_survives_a_killed_worker(photos, ray_session, tmp_path):
    batches = list(batched(photos, 2))
    compute = Compute(backend="ray", workers=2, threads=1)
    local = list(map_batches(saliency_task, batches, SPEC, Compute(backend="local", threads=1)))
    remote = list(map_batches(saliency_task, batches, SPEC, compute))
    assert len(remote) == len(local) == 2
    assert all(a.tobytes() == b.tobytes() for a, b in zip(local, remote, strict=True))

    marker = tmp_path / "killed"
    payloads = [(b, i, str(marker)) for i, b in enumerate(batches)]
    retried = list(map_batches(dying_saliency_task, payloads, SPEC, compute))
    assert marker.read_text() == "killed once"  # a worker really died
    assert all(a.tobytes() == b.tobytes() for a, b in zip(local, retried, strict=True))


def test_unknown_backend_and_unreachable_cluster_are_one_line_errors(ray_session):
    with pytest.raises(ParamError, match=r"^compute.backend: 'spark' is not allowed"):
        next(map_batches(saliency_task, [], SPEC, Compute(backend="spark")))
    ray_session.shutdown()  # a connected session would be reused instead of joining the address
    with pytest.raises(ParamError, match=r"^compute.ray_address: 'ray://127.0.0.1:1' cannot be reached"):
        next(map_batches(saliency_task, [np.zeros(1)], SPEC, Compute(backend="ray", ray_address="ray://127.0.0.1:1")))
