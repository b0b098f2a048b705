"""``run = fewshot.setup(seed)``: the first call of every notebook.

It decides, once, everything a run depends on and prints it in one line:

* the seed: every random generator is seeded, and the run hands its seed to whatever needs one
  (``setup(5)`` changes the numbers; ``setup(0)`` reproduces the book's);
* deterministic torch kernels (global process state, set here and nowhere else);
* the device and the run size (:mod:`fewshot.config`), and how to ask for another size;
* the data: MNIST, or its offline fallback (:mod:`fewshot.data`), and the characters, at the run's
  size (:meth:`Run.mnist`, :meth:`Run.characters`);
* what to train: :meth:`Run.spec` fills a :class:`~fewshot.spec.TrainSpec` from the profile and seed.

With ``python -m fewshot`` and the table builders that take the Run (``compare.compare(run)``,
``oneshot.oneshot(run)``, ``protocol.verification_results(run)``, ...), this is the **entry layer**:
only here are the profile, the seed and the run's data decided; everything below receives them as
arguments (``tests/test_architecture.py`` checks it).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, replace
from typing import Any

import torch

from . import characters, data
from .config import (DEFAULT_SEED, PROFILES, Profile, check_seed, get_device, get_profile,
                     seed_everything, use_deterministic_kernels)
from .spec import TrainSpec

LINE_WIDTH = 78  # a printed line that fits the book's column


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

    def characters(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """This run's characters: ``Profile.characters`` background characters (all of them on a
        GPU), and every evaluation character (they are only embedded, never trained on)."""
        classes = self.profile.characters if split == characters.BACKGROUND_SPLIT else None
        return characters.load_characters(split, classes=classes)

    def characters_line(self) -> str:
        """The line a character chapter prints first: ``"Characters: <source>"``, saying how many
        background characters this run trains on where its profile takes fewer than the source
        has (``"… 859 background (200 used at the quick profile) / 429 evaluation"``)."""
        where = characters.characters_source()  # "… N background … / M evaluation …"
        found = re.search(r"(\d+) background", where)
        used = self.profile.characters
        if found and used is not None and used < int(found.group(1)):
            where = where.replace(" background", f" background ({used} used at the "
                                  f"{self.profile.name} profile)", 1)
        return f"Characters: {where}"

    def spec(self, method: str, dim: int = 2, **settings: Any) -> TrainSpec:
        """What to train: ``method`` at embedding size ``dim``, with this run's epochs, batch size,
        learning rate, frames and seed, and the method's own ``settings`` (the fields of
        :class:`~fewshot.spec.TrainSpec`: ``miner="batch_hard"``, ``margin=SOFT``, ...; ``epochs``
        or ``seed`` override the run's)."""
        p = self.profile
        schedule = {"epochs": p.epochs, "batch_size": p.batch_size, "lr": p.lr,
                    "frames": p.frames, "seed": self.seed}
        return TrainSpec(method=method, embed_dim=dim, **{**schedule, **settings})

    def with_epochs(self, epochs: int | None) -> Run:
        """This run with ``epochs`` training epochs instead of the profile's (``None``: as is),
        for the command line's ``--epochs``."""
        return self if epochs is None else replace(self, profile=replace(self.profile,
                                                                         epochs=epochs))

    def __str__(self) -> str:
        """What :func:`setup` prints: device, size and data source on one line, then how to ask for
        the other size (two short lines, so they fit the page's column)."""
        line = f"{self.device.type} · {self.profile.name} profile · {self.data_source}"
        if len(line) > LINE_WIDTH:  # the data source on a line of its own
            line = f"{self.device.type} · {self.profile.name} profile\n" + textwrap.fill(
                self.data_source, LINE_WIDTH, subsequent_indent="  ")
        other = PROFILES.get(self.profile.other)
        return f"{line}\nanother size: FEWSHOT_PROFILE={other.name} ({other.about})" if other else line


def setup(seed: int = DEFAULT_SEED, *, verbose: bool = True) -> Run:
    """Seed everything, pick device and profile, load MNIST, and print one line saying so.

    Returns:
        A :class:`Run`; notebooks read ``run.device``, ``run.profile`` and ``run.seed``.
    """
    check_seed(seed)
    use_deterministic_kernels()
    device = get_device()
    profile = get_profile(device)
    data.load_mnist("train", quiet=True)  # decide the source once, so the line below is true
    run = Run(device=device, profile=profile, seed=seed, data_source=data.mnist_source())
    if verbose:
        print(run)
    seed_everything(seed)  # loading may have drawn random numbers: start every cell after this equal
    return run
