"""``run = fewshot.setup(seed)``: the first call of every notebook.

It decides, once, everything a run depends on and prints it in one line:

* the seed: every random generator is seeded, and recipes and evaluations use this seed unless told
  otherwise (``setup(5)`` changes the numbers; ``setup(0)`` reproduces the book's);
* deterministic torch kernels (global process state, set here and nowhere else);
* the device and the run size (:mod:`fewshot.config`), and how to ask for another size;
* the data: MNIST, or its offline fallback (:mod:`fewshot.data`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import data
from .config import (DEFAULT_SEED, PROFILES, Profile, get_device, get_profile, seed_everything,
                     set_current_seed, use_deterministic_kernels)


@dataclass(frozen=True)
class Run:
    """What :func:`setup` decided: device, profile, seed and where the data came from."""

    device: torch.device
    profile: Profile
    seed: int
    data_source: str

    def mnist(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """This run's MNIST split at its profile's size, or the whole split where the source has fewer
        images (the offline fallback's 4,000 / 1,000 digits under the ``full`` profile):
        ``(images (N, 1, 28, 28), labels (N,))``."""
        data.check_split(split)
        p = self.profile
        size = p.train_size if split == "train" else p.test_size
        if size is not None:
            size = min(size, data.split_size(split))
        return data.load_mnist(split, size=size)

    def __str__(self) -> str:
        """What :func:`setup` prints: device, size and data source on one line, then how to ask for
        the other size (two short lines, so they fit the page's column)."""
        line = f"{self.device.type} · {self.profile.name} profile · {self.data_source}"
        other = PROFILES.get(self.profile.other)
        return f"{line}\nanother size: FEWSHOT_PROFILE={other.name} ({other.about})" if other else line


def setup(seed: int = DEFAULT_SEED, *, verbose: bool = True) -> Run:
    """Seed everything, pick device and profile, load MNIST, and print one line saying so.

    Returns:
        A :class:`Run`; notebooks read ``run.device``, ``run.profile`` and ``run.seed``.
    """
    set_current_seed(seed)
    use_deterministic_kernels()
    device = get_device()
    profile = get_profile(device)
    data.load_mnist("train", quiet=True)  # decide the source once, so the line below is true
    run = Run(device=device, profile=profile, seed=seed, data_source=data.mnist_source())
    if verbose:
        print(run)
    seed_everything(seed)  # loading may have drawn random numbers: start every cell after this equal
    return run
