"""Where a stage's batches run: in this process (``local``) or on Ray workers (``ray``).

A stage cuts its shard into batches (:func:`deepsaliency.shards.batched`) and hands them, with a task
function, to :func:`map_batches`; it writes each result as it arrives, in input order, so peak memory
is one batch per worker whatever the number of images.

* ``local``: one model in this process, ``threads`` torch threads.
* ``ray``: ``workers`` Ray actors (https://docs.ray.io), each loading the model once with ``threads``
  torch threads and ``gpus_per_worker`` GPUs. ``ray_address`` None starts a local Ray on this machine
  (``num_cpus = workers · threads``); ``auto`` or ``ray://host:port`` joins a cluster. A worker that dies
  is restarted and its batch retried by Ray (``max_restarts``/``max_task_retries``), so a stage still
  returns every result.

On a CPU the two backends give byte-identical results when they use the same thread count and batch
boundaries (the batches are the same objects; each worker sets its own torch thread count).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any, TypeVar, cast

from ._validate import check_choice
from .errors import ParamError
from .params import DEFAULTS

R = TypeVar("R")

#: Task signature: ``task(model, payload) -> result``; a module-level function (it is pickled for Ray).
Task = Callable[[Any, Any], R]

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Compute:
    """How a stage runs (the ``compute`` section of params.yaml).

    Attributes:
        backend: ``local`` or ``ray``.
        workers: Ray actors (``ray`` only), ≥ 1.
        threads: torch threads per worker (and of the local process), ≥ 1; None = this process's torch default,
            resolved here so that Ray workers (whose own default Ray sets to 1) use the same number.
        gpus_per_worker: GPUs per Ray actor (0 on a CPU machine; fractions share a GPU).
        ray_address: None = start Ray on this machine; ``auto`` or ``ray://host:port`` = join a cluster.

    The defaults are the ``compute`` section's (:data:`deepsaliency.params.DEFAULTS`).
    """

    backend: str = DEFAULTS.compute.backend
    workers: int = DEFAULTS.compute.workers
    threads: int | None = DEFAULTS.compute.threads
    gpus_per_worker: float = DEFAULTS.compute.gpus_per_worker
    ray_address: str | None = DEFAULTS.compute.ray_address

    @classmethod
    def from_params(cls, section: dict[str, Any]) -> Compute:
        """The settings of a validated ``compute`` params section (its ``batch_size`` is the stage's business)."""
        return cls(**{f.name: section[f.name] for f in fields(cls)})

    def torch_threads(self) -> int:
        """The torch thread count every backend uses: :attr:`threads`, or this process's default."""
        import torch

        return torch.get_num_threads() if self.threads is None else self.threads


class _Worker:
    """A Ray actor: the model, loaded once, and the task applied to each payload."""

    def __init__(self, model_spec: dict, threads: int) -> None:
        import torch

        from .models import load_model

        torch.set_num_threads(threads)
        self.model = load_model(**model_spec)

    def run(self, task: Task, payload: Any) -> Any:
        return task(self.model, payload)


def _local(task: Task, payloads: Iterable[Any], model: Any, model_spec: dict, threads: int) -> Iterator[Any]:
    import torch

    from .models import load_model

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = model if model is not None else load_model(**model_spec)
        for payload in payloads:
            yield task(model, payload)
    finally:
        torch.set_num_threads(previous)


def start_ray(compute: Compute) -> None:
    """Start or join Ray as ``compute`` says (a no-op when this process is already connected).

    Raises:
        ParamError: ``compute.ray_address`` cannot be reached (one line naming it).
    """
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if compute.ray_address is None:
        kwargs["num_cpus"] = compute.workers * compute.torch_threads()
        kwargs["num_gpus"] = int(round(compute.workers * compute.gpus_per_worker))
    else:
        kwargs["address"] = compute.ray_address
    try:
        ray.init(**kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParamError(f"compute.ray_address: {compute.ray_address!r} cannot be reached ({reason[:160]})") from None


def _ray(task: Task, payloads: Iterable[Any], model_spec: dict, compute: Compute) -> Iterator[Any]:
    import ray
    from ray.util import ActorPool

    start_ray(compute)
    threads = compute.torch_threads()
    worker = ray.remote(num_cpus=threads, num_gpus=compute.gpus_per_worker, max_restarts=3, max_task_retries=3)(_Worker)
    actors: list[Any] = [worker.remote(model_spec, threads) for _ in range(compute.workers)]
    try:
        # ActorPool.map hands a payload to each free actor and yields results in input order. Ray annotates
        # its values as a list but only iterates them, so the payloads stay lazy.
        values = cast(list[Any], payloads)
        yield from ActorPool(actors).map(lambda actor, payload: actor.run.remote(task, payload), values)
    finally:
        for actor in actors:
            ray.kill(actor)


def map_batches(
    task: Task, payloads: Iterable[Any], model_spec: dict, compute: Compute = Compute(), model: Any = None
) -> Iterator[Any]:
    """Apply ``task(model, payload)`` to every payload on the chosen backend; yield results in input order.

    Args:
        task: a module-level function ``(model, payload) -> result`` (Ray pickles it).
        payloads: the batches, e.g. from :func:`deepsaliency.shards.batched`; consumed lazily.
        model_spec: keyword arguments of :func:`deepsaliency.models.load_model` (the ``model`` section).
        compute: the backend settings.
        model: ``local`` only: an already loaded model to reuse (else one is loaded from ``model_spec``).

    Returns:
        An iterator of results, one per payload, in order.

    Raises:
        ParamError: an unknown backend, or an unreachable Ray address.
    """
    if check_choice(compute.backend, "compute.backend", BACKENDS) == "local":
        return _local(task, payloads, model, model_spec, compute.torch_threads())
    return _ray(task, payloads, model_spec, compute)
