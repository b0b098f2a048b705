"""Sphinx extension for the book build: pages show results, not progress bars.

Notebook kernels inherit the build's environment, so setting ``FEWSHOT_PROGRESS=0`` here turns off
``fewshot``'s training progress bars in every executed chapter (they would otherwise be saved into
the pages as finished bar widgets). A reader running a notebook in Jupyter or Colab still sees them.
"""

from __future__ import annotations

import os


def setup(app: object) -> dict:
    os.environ.setdefault("FEWSHOT_PROGRESS", "0")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
