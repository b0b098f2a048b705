"""Run configuration, in one place: device, seeds, run size ("profile") and environment flags.

This is the ground floor of the package: it imports nothing of ``fewshot``. :func:`fewshot.setup`
(in :mod:`fewshot.run`) reads it once at the top of every notebook.

* Device: CUDA, then Apple MPS, then CPU (``FEWSHOT_DEVICE`` overrides).
* Profile (run size): ``ci`` when ``FEWSHOT_FAST=1`` (tests and CI: minutes for the whole book),
  ``gpu`` on a CUDA/MPS device (full data), ``cpu`` otherwise (laptop-sized);
  ``FEWSHOT_PROFILE=ci|cpu|gpu`` forces one.
* Seed: :func:`current_seed` is the seed the run was set up with; recipes and evaluations use it
  unless given one explicitly, so ``setup(5)`` changes every number and ``setup(0)`` reproduces them.

No notebook hard-codes epochs or subset sizes: they read ``run.profile``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_SEED = 0
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def env_flag(name: str, default: bool = False) -> bool:
    """The boolean environment variable ``name``: 1/true/yes/on or 0/false/no/off (any case).

    Unset gives ``default``; any other value raises ``ValueError`` naming it.
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False if value else default
    raise ValueError(f"{name}={raw!r}: expected 1/true/yes/on or 0/false/no/off")


@dataclass(frozen=True)
class Profile:
    """How big a run is. Every size the notebooks use comes from here.

    Attributes:
        name: ``"ci"``, ``"cpu"`` or ``"gpu"``.
        train_size, test_size: MNIST images to use (``None``: the whole split).
        epochs: training epochs.
        batch_size: mini-batch size for training.
        lr: Adam learning rate.
        episodes: few-shot episodes per evaluation (the 95% CI shrinks with more).
        seeds: training seeds per comparison row (mean ± std over them when more than one).
        characters: background (training) characters to use in the character chapters
            (``None``: all of them).
        frames: pre-rendered frames per widget slider (keeps pages light).
    """

    name: str
    train_size: int | None
    test_size: int | None
    epochs: int
    batch_size: int
    lr: float
    episodes: int
    seeds: int = 1
    characters: int | None = None
    frames: int = 5


PROFILES: dict[str, Profile] = {
    "ci": Profile("ci", train_size=4000, test_size=1000, epochs=10, batch_size=64, lr=3e-3,
                  episodes=300, seeds=1, characters=200),
    "cpu": Profile("cpu", train_size=12000, test_size=2000, epochs=10, batch_size=64, lr=3e-3,
                   episodes=600, seeds=3, characters=500),
    "gpu": Profile("gpu", train_size=None, test_size=None, epochs=20, batch_size=128, lr=3e-3,
                   episodes=1000, seeds=3, characters=None),
}


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
    if env_flag("FEWSHOT_FAST"):
        return PROFILES["ci"]
    device = device or get_device()
    return PROFILES["gpu" if device.type in {"cuda", "mps"} else "cpu"]


_RUN_SEED = [DEFAULT_SEED]  # set by fewshot.setup(seed)


def current_seed() -> int:
    """The seed of the current run (:func:`fewshot.setup`'s argument; 0 before it is called)."""
    return _RUN_SEED[0]


def set_current_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected an integer ≥ 0")
    _RUN_SEED[0] = seed


def resolve_seed(seed: int | None) -> int:
    """``seed`` if given, else the run's seed."""
    if seed is None:
        return current_seed()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected an integer ≥ 0")
    return seed


def use_deterministic_kernels() -> None:
    """Ask torch for deterministic kernels. This is **global process state**: :func:`fewshot.setup`
    sets it once and nothing else in the package touches it.

    Without it, the gradient of ``emb[indices]`` (how in-batch pairs and triplets pick their
    embeddings) is summed in a thread-dependent order, and two identical CPU runs drift apart. Ops
    with no deterministic version (some CUDA kernels) warn instead of failing.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def seed_everything(seed: int = DEFAULT_SEED) -> None:
    """Seed Python, NumPy and torch (all devices) so the same run prints the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def generator(seed: int = DEFAULT_SEED) -> torch.Generator:
    """A fresh CPU ``torch.Generator`` seeded with ``seed`` (for samplers and miners)."""
    return torch.Generator().manual_seed(seed)
