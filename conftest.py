"""pytest's settings for the whole repository, the notebooks in ``book/`` included: this file is
loaded however pytest is called (``pytest``, ``pytest book/``, ``pytest -n 2 book/04_*.ipynb``),
where ``tests/conftest.py`` is loaded only when ``tests/`` is collected.

- The quick size, offline: no download, the same numbers on every machine.
- Under ``pytest -n N``, one thread per worker and per notebook kernel.
- With workers, the notebooks run first, in two lanes in book order.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("FEWSHOT_FAST", "1")
os.environ.setdefault("FEWSHOT_OFFLINE", "1")


def pytest_configure(config: pytest.Config) -> None:
    """Under ``pytest -n N`` (an xdist worker has ``workerinput``): one thread per worker and per
    notebook kernel, which inherits this environment when nbmake starts it. Two single-thread
    processes train 1.7x as fast as one with two threads (README, "Training speed"); two kernels
    with two OpenMP threads each on two cores trained the same model 7x slower (175 s against
    23 s). Tested in ``tests/test_threads.py``."""
    if hasattr(config, "workerinput"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        os.environ.setdefault("MKL_NUM_THREADS", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With workers (``pytest -n 2 --dist loadgroup``, as CI runs it): the notebooks first, in two
    lanes that alternate in book order (chapters 1, 3, 5, 7, 9 and 2, 4, 6, 8, 10: about 295 s and
    302 s in the last sequential CI), each lane on one worker in book order; the unit tests fill
    in after them. A model two lanes need at once is trained by one and waited for by the other
    (the cache's lock), so the ledger still shows every spec trained once."""
    if config.getoption("dist", "no") == "no":
        return
    notebooks = sorted((i for i in items if i.path.suffix == ".ipynb"), key=lambda i: i.path.name)
    for n, item in enumerate(notebooks):
        item.add_marker(pytest.mark.xdist_group(f"notebooks-{n % 2}"))
    others = [i for i in items if i.path.suffix != ".ipynb"]
    items[:] = notebooks + others
