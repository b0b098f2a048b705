"""Atomic file writes: a reader never sees half a file, and a failed write leaves nothing behind.

One helper for the model cache (:mod:`fewshot.cache`) and the printed characters' file
(:mod:`fewshot.characters`). It imports nothing of the package, so importing ``fewshot`` (which loads
the characters for :meth:`fewshot.run.Run.characters`) does not load the model cache: ``python -m
fewshot.cache`` runs it fresh.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically: into a temporary file beside it, then renamed, so
    a reader never sees half a file and a failed write leaves nothing behind. Raises ``OSError``
    when the directory cannot be written (the caller decides what that means)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
