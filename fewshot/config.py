"""Run configuration, in one place: the environment, device, seeds and run size ("profile").

This is the ground floor of the package: it imports nothing of ``fewshot``. :func:`fewshot.setup`
(in :mod:`fewshot.run`) reads it once at the top of every notebook.

* Environment: :func:`settings` reads every ``FEWSHOT_*`` variable (:data:`VARIABLES`) into one
  frozen :class:`Settings`; no other module of the package reads ``os.environ``.
* Device: CUDA, then Apple MPS, then CPU (``FEWSHOT_DEVICE`` overrides).
* Profile (run size), :data:`PROFILES`: ``quick`` on a CPU (the default: minutes for the whole
  book), ``gpu`` on a CUDA/MPS device (a reader's GPU: minutes per chapter); the larger
  ``full`` (the published CPU build) and ``gpu-full`` by name. ``FEWSHOT_PROFILE=name`` forces
  one; ``FEWSHOT_FAST=1`` forces ``quick`` on any device (tests and CI).
* Seed: there is no process-wide "current seed": :func:`fewshot.setup` puts the seed in the
  :class:`~fewshot.run.Run`, and every function that draws random numbers takes its seed as an
  argument, so ``setup(5)`` changes every number and ``setup(0)`` reproduces them.

No notebook hard-codes epochs or subset sizes: they read ``run.profile``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

DEFAULT_SEED = 0
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _parse_flag(name: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False if value else default
    raise ValueError(f"{name}={raw!r}: expected 1/true/yes/on or 0/false/no/off")


def env_flag(name: str, default: bool = False) -> bool:
    """The boolean environment variable ``name``: 1/true/yes/on or 0/false/no/off (any case).

    Unset gives ``default``; any other value raises ``ValueError`` naming it. (The package reads
    its own variables through :func:`settings`.)
    """
    return _parse_flag(name, os.environ.get(name), default)


@dataclass(frozen=True)
class Profile:
    """How big a run is. Every size the notebooks use comes from here.

    Attributes:
        name: a key of :data:`PROFILES`.
        train_size, test_size: MNIST images to use (``None``: the whole split).
        epochs: training epochs.
        batch_size: mini-batch size for training.
        lr: Adam learning rate.
        episodes: few-shot episodes per evaluation (the 95% CI shrinks with more).
        seeds: training seeds per row of the **digit** comparisons (``compare.evaluate_method``,
            chapters 3–7 and 10): mean ± std over them when more than one. The character
            chapters (8, 9) train one model per method at every size and report the 95% CI
            over episodes.
        characters: background (training) characters to use in the character chapters
            (``None``: all of them).
        frames: pre-rendered frames per widget slider (keeps pages light).
        about: what the size is for, in a few words (``setup()``'s line says it).
        other: the profile a reader of this one is most likely to want instead.
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
    about: str = ""
    other: str = ""


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", train_size=4000, test_size=1000, epochs=10, batch_size=64, lr=3e-3,
                     episodes=300, seeds=1, characters=200, about="the quick CPU size",
                     other="full"),
    "full": Profile("full", train_size=12000, test_size=2000, epochs=10, batch_size=64, lr=3e-3,
                    episodes=600, seeds=3, characters=500, about="the published CPU size",
                    other="quick"),
    # Sized for Colab's free T4 GPU: about 2 minutes of training for the longest chapter, 8 for the
    # book, at an estimated 20,000 training images/s (README, "Run size": an estimate from the
    # model's FLOPs and a T4's throughput, not yet measured on a GPU).
    "gpu": Profile("gpu", train_size=None, test_size=None, epochs=10, batch_size=128, lr=3e-3,
                   episodes=600, seeds=1, characters=None, about="the GPU default",
                   other="gpu-full"),
    "gpu-full": Profile("gpu-full", train_size=None, test_size=None, epochs=20, batch_size=128,
                        lr=3e-3, episodes=1000, seeds=3, characters=None,
                        about="the full GPU size", other="gpu"),
}
RENAMED = {"ci": "quick", "cpu": "full"}  # the profiles' names before they said what they are

# Every environment variable the package reads, with what it does (README's table, checked by a test).
VARIABLES: dict[str, str] = {
    "FEWSHOT_PROFILE": "run size: " + ", ".join(PROFILES) + " (default: quick on a CPU, gpu on "
                       "CUDA/MPS)",
    "FEWSHOT_FAST": "1: the quick profile on any device (tests and CI)",
    "FEWSHOT_DEVICE": "the torch device to use, e.g. cpu or cuda:1 (default: CUDA, MPS, then CPU)",
    "FEWSHOT_OFFLINE": "1: do not download; MNIST and characters use their offline fallbacks",
    "FEWSHOT_DATA_DIR": "where downloaded and generated data live (default ~/.cache/fewshot)",
    "FEWSHOT_CACHE_DIR": "where trained models are cached (default ~/.cache/fewshot/models)",
    "FEWSHOT_CACHE": "0: train every model, never load or save the model cache",
    "FEWSHOT_LEDGER": "a JSON-lines file every training and cache load is appended to",
    "FEWSHOT_PROGRESS": "0: no training progress bars (the book build sets it)",
}


@dataclass(frozen=True)
class Settings:
    """Every ``FEWSHOT_*`` environment variable, read and checked once (:func:`settings`).

    Attributes:
        profile: ``FEWSHOT_PROFILE`` (a key of :data:`PROFILES`), or ``None`` to choose by device.
        fast: ``FEWSHOT_FAST``: the quick profile on any device.
        device: ``FEWSHOT_DEVICE``, or ``None`` to choose CUDA, MPS, then CPU.
        offline: ``FEWSHOT_OFFLINE``: use the offline fallbacks, never download.
        data_dir: ``FEWSHOT_DATA_DIR`` (default ``~/.cache/fewshot``).
        cache_dir: ``FEWSHOT_CACHE_DIR`` (default ``~/.cache/fewshot/models``).
        cache: ``FEWSHOT_CACHE`` (default on).
        ledger: ``FEWSHOT_LEDGER``, or ``None``.
        progress: ``FEWSHOT_PROGRESS`` (default on).
    """

    profile: str | None = None
    fast: bool = False
    device: str | None = None
    offline: bool = False
    data_dir: Path = Path.home() / ".cache" / "fewshot"
    cache_dir: Path = Path.home() / ".cache" / "fewshot" / "models"
    cache: bool = True
    ledger: Path | None = None
    progress: bool = True


def settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every variable of :data:`VARIABLES` from ``environ`` (default ``os.environ``, read
    now: a changed variable counts from the next call). A bad value raises ``ValueError`` naming
    the variable and the value."""
    env = os.environ if environ is None else environ

    def text(name: str) -> str | None:
        raw = env.get(name)
        return raw.strip() if raw is not None and raw.strip() else None

    profile = text("FEWSHOT_PROFILE")
    if profile is not None:
        profile = profile.lower()
        if profile not in PROFILES:
            hint = (f" (renamed: FEWSHOT_PROFILE={RENAMED[profile]})" if profile in RENAMED
                    else "")
            raise ValueError(f"FEWSHOT_PROFILE={env.get('FEWSHOT_PROFILE')!r} is not one of "
                             f"{list(PROFILES)}{hint}")
    home = Path.home() / ".cache" / "fewshot"
    data_dir, cache_dir, ledger = (text(n) for n in ("FEWSHOT_DATA_DIR", "FEWSHOT_CACHE_DIR",
                                                     "FEWSHOT_LEDGER"))
    return Settings(
        profile=profile,
        fast=_parse_flag("FEWSHOT_FAST", env.get("FEWSHOT_FAST"), False),
        device=text("FEWSHOT_DEVICE"),
        offline=_parse_flag("FEWSHOT_OFFLINE", env.get("FEWSHOT_OFFLINE"), False),
        data_dir=Path(data_dir).expanduser() if data_dir else home,
        cache_dir=Path(cache_dir).expanduser() if cache_dir else home / "models",
        cache=_parse_flag("FEWSHOT_CACHE", env.get("FEWSHOT_CACHE"), True),
        ledger=Path(ledger).expanduser() if ledger else None,
        progress=_parse_flag("FEWSHOT_PROGRESS", env.get("FEWSHOT_PROGRESS"), True),
    )


def get_device() -> torch.device:
    """The device to train on: ``FEWSHOT_DEVICE`` if set, else CUDA, then MPS, then CPU."""
    forced = settings().device
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_profile(device: torch.device | None = None) -> Profile:
    """The run size: ``FEWSHOT_PROFILE``, else ``quick`` under ``FEWSHOT_FAST=1``, else by device
    (``gpu`` on CUDA or MPS, ``quick`` on a CPU)."""
    env = settings()
    if env.profile is not None:
        return PROFILES[env.profile]
    if env.fast:
        return PROFILES["quick"]
    device = device or get_device()
    return PROFILES["gpu" if device.type in {"cuda", "mps"} else "quick"]


def check_seed(seed: object) -> int:
    """``seed`` as an int ≥ 0, else ``ValueError`` naming it."""
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
