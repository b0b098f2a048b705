"""Run configuration, in one place: device, seeds and run size ("profile").

Every notebook starts with ``run = fewshot.setup()``. That call

* picks the device: CUDA, then Apple MPS, then CPU (``FEWSHOT_DEVICE`` overrides);
* seeds Python, NumPy and torch (:data:`DEFAULT_SEED`);
* picks the run size, a :class:`Profile`:

  - ``ci``  when ``FEWSHOT_FAST=1`` (the tests and CI: a few minutes for the whole book);
  - ``gpu`` on a CUDA/MPS device (full MNIST, more epochs);
  - ``cpu`` otherwise (laptop-sized: the whole book well under 30 minutes on two cores);
  - ``FEWSHOT_PROFILE=ci|cpu|gpu`` forces one;

* loads MNIST once and prints one line saying device, profile and data source.

No notebook hard-codes epochs or subset sizes: they read ``run.profile``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_SEED = 0


@dataclass(frozen=True)
class Profile:
    """How big a run is. Every size the notebooks use comes from here.

    Attributes:
        name: ``"ci"``, ``"cpu"`` or ``"gpu"``.
        train_size: training images to use (``None``: the whole split).
        test_size: test images to use (``None``: the whole split).
        epochs: training epochs for the metric-learning chapters.
        batch_size: mini-batch size for training.
        lr: Adam learning rate.
        episodes: few-shot episodes per evaluation (the 95% CI shrinks with more).
        frames: pre-rendered frames per widget slider (keeps pages light).
    """

    name: str
    train_size: int | None
    test_size: int | None
    epochs: int
    batch_size: int
    lr: float
    episodes: int
    frames: int = 5


PROFILES: dict[str, Profile] = {
    "ci": Profile("ci", train_size=4000, test_size=1000, epochs=10, batch_size=64, lr=3e-3,
                  episodes=300),
    "cpu": Profile("cpu", train_size=12000, test_size=2000, epochs=10, batch_size=64, lr=3e-3,
                   episodes=600),
    "gpu": Profile("gpu", train_size=None, test_size=None, epochs=20, batch_size=128, lr=3e-3,
                   episodes=1000),
}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def get_device() -> torch.device:
    """The device to train on: ``FEWSHOT_DEVICE`` if set, else CUDA, then MPS, then CPU."""
    forced = os.environ.get("FEWSHOT_DEVICE", "").strip()
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_profile(device: torch.device | None = None) -> Profile:
    """The run size: ``FEWSHOT_PROFILE``, else ``ci`` under ``FEWSHOT_FAST=1``, else by device."""
    forced = os.environ.get("FEWSHOT_PROFILE", "").strip().lower()
    if forced:
        if forced not in PROFILES:
            raise ValueError(f"FEWSHOT_PROFILE={forced!r} is not one of {sorted(PROFILES)}")
        return PROFILES[forced]
    if _env_flag("FEWSHOT_FAST"):
        return PROFILES["ci"]
    device = device or get_device()
    return PROFILES["gpu" if device.type in {"cuda", "mps"} else "cpu"]


def seed_everything(seed: int = DEFAULT_SEED) -> None:
    """Seed Python, NumPy and torch (all devices) so the same run prints the same numbers.

    Also asks torch for deterministic kernels: without that, the gradient of ``emb[indices]`` (how
    in-batch pairs and triplets pick their embeddings) is summed in a thread-dependent order, and two
    identical runs drift apart. Ops with no deterministic version (some CUDA kernels) warn, not fail.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def generator(seed: int = DEFAULT_SEED) -> torch.Generator:
    """A fresh CPU ``torch.Generator`` seeded with ``seed`` (for samplers and data loaders)."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


@dataclass(frozen=True)
class Run:
    """What :func:`setup` decided: device, profile, seed and where the data came from."""

    device: torch.device
    profile: Profile
    seed: int
    data_source: str

    def __str__(self) -> str:
        return f"device={self.device.type} · profile={self.profile.name} · data={self.data_source}"


def setup(seed: int = DEFAULT_SEED, *, verbose: bool = True) -> Run:
    """Seed everything, pick device and profile, load MNIST, and print one line saying so.

    Returns:
        A :class:`Run`; notebooks read ``run.device`` and ``run.profile``.
    """
    from . import data  # local import: data imports this module

    seed_everything(seed)
    device = get_device()
    profile = get_profile(device)
    data.load_mnist("train", quiet=True)  # decide the source once, so the line below is true
    run = Run(device=device, profile=profile, seed=seed, data_source=data.mnist_source())
    if verbose:
        print(run)
    # setup() may have drawn random numbers while loading data: reseed so cells after it start equal.
    seed_everything(seed)
    return run

