"""Trained models on disk, and the ledger of every training in a run.

A cache entry is one file, ``<name>-<key>.pt``, holding **only tensors and JSON-able data** (the
state dict, the training history, the spec), written atomically and loaded with
``torch.load(weights_only=True)``: a cache file cannot execute code.

It must never lose work or crash a notebook:

* a file that is truncated, garbage, from another version or of the wrong shape is a **miss**: one
  warning line, then the caller retrains and overwrites it;
* a directory that cannot be written (read-only mount, a path through a file): one warning, and the
  trained model simply stays in memory;
* a model whose weights are not finite is never cached.

**Two processes, one model.** Chapters may run in parallel (CI runs two notebooks at a time). A
:meth:`ModelCache.load` that misses *claims* the file with a lock (``.<file>.lock`` beside it, via
``filelock``) until :meth:`~ModelCache.save` writes it or :meth:`~ModelCache.record` notes the
training: another process that needs the same model waits at its own ``load``, then loads what the
first one trained. So a model is trained once however many processes need it (the ledger check
proves it).

``FEWSHOT_CACHE_DIR`` (default ``~/.cache/fewshot/models``) says where; ``FEWSHOT_CACHE=0`` turns the
cache off. A :class:`ModelCache` holds all of this state (no module globals); :func:`default` is
the one of the configured folder. Its **ledger** records every model a process trained or loaded
(spec, seconds, whether it came from the cache); with ``FEWSHOT_LEDGER=path`` it is also appended to
a JSON-lines file, which CI checks for a spec trained twice
(``python -m fewshot.cache --check-ledger PATH``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import filelock
import torch
from torch import nn

from .config import settings
from .files import atomic_save

FORMAT = 2  # bump when the file layout changes: older files become misses
LOCK_TIMEOUT = 3600.0  # seconds to wait for another process's training before training anyway


class CacheWarning(UserWarning):
    """A cache file could not be used or written; the run goes on without it."""


def source_hash(modules: tuple[str, ...]) -> str:
    """A hash of the source files of ``fewshot`` modules (names like ``"train"``): a change to any
    of them changes every key built with it."""
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(name.encode())
        h.update((Path(__file__).parent / f"{name}.py").read_bytes())
    return h.hexdigest()[:16]


def make_key(spec: dict, tensors: tuple[torch.Tensor, ...], modules: tuple[str, ...]) -> str:
    """A key for ``spec`` (JSON-able), the data ``tensors`` and the code in ``modules``."""
    h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(source_hash(modules).encode())
    h.update(str(FORMAT).encode())
    return h.hexdigest()[:24]


def lock_path(path: Path) -> Path:
    """The lock file that guards the training of cache file ``path``."""
    return path.with_name(f".{path.name}.lock")


class ModelCache:
    """The trained models in one folder, and the ledger of this process's trainings with it.

    Its state is its own: the ledger (:attr:`entries`), the warnings already given and the files
    this process has claimed. :func:`default` gives the one of the configured folder.

    Args:
        directory: where the ``<name>-<key>.pt`` files live.
        enabled: ``False`` (``FEWSHOT_CACHE=0``): never load or save, still keep the ledger.
        ledger: a JSON-lines file every entry is also appended to (``FEWSHOT_LEDGER``).
    """

    def __init__(self, directory: str | Path, *, enabled: bool = True,
                 ledger: str | Path | None = None) -> None:
        self.directory = Path(directory)
        self.enabled = bool(enabled)
        self.ledger = Path(ledger) if ledger is not None else None
        self.entries: list[dict] = []  # this process's trainings and cache hits, in order
        self._warned: set[str] = set()
        self._claims: dict[str, filelock.FileLock] = {}  # files this process is training (locked)

    def __repr__(self) -> str:
        return f"ModelCache({str(self.directory)!r}, enabled={self.enabled})"

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, CacheWarning, stacklevel=3)

    def path_for(self, name: str, key: str) -> Path:
        return self.directory / f"{name}-{key}.pt"

    def claim(self, path: Path, timeout: float = LOCK_TIMEOUT) -> bool:
        """Take the lock on ``path`` for this process (waiting while another process holds it);
        ``True`` if taken. Held until :meth:`release`. A directory that cannot hold a lock file,
        or a wait longer than ``timeout`` seconds, gives ``False`` (one warning): the caller goes
        on without it. Claiming a path this process already holds is a no-op."""
        if str(path) in self._claims:
            return True
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = filelock.FileLock(str(lock_path(path)), timeout=timeout)
            lock.acquire()
        except filelock.Timeout:
            self._warn_once(f"lock:{path}", f"waited {timeout:.0f} s for another process to train "
                            f"{path.name}; training it here too")
            return False
        except OSError as exc:
            self._warn_once(f"dir:{path.parent}", f"the model cache {path.parent} cannot be "
                            f"written ({exc.strerror or exc}); models stay in memory only")
            return False
        self._claims[str(path)] = lock
        return True

    def release(self, path: Path) -> None:
        """Release this process's lock on ``path`` (nothing if it holds none)."""
        lock = self._claims.pop(str(path), None)
        if lock is not None:
            lock.release(force=True)

    def release_all(self) -> None:
        """Release every lock this process holds (a run that stopped half-way)."""
        for path in list(self._claims):
            self.release(Path(path))

    def load(self, path: Path, model: nn.Module, read_meta: Callable[[dict], object] | None = None
             ) -> dict | None:
        """Load a cached state into ``model``; return ``{"meta": …, "snapshots": [state dicts]}``,
        or ``None`` on a miss. ``read_meta(meta)`` (if given) turns the stored JSON into what the
        caller needs, before any weight is loaded; if it raises, the file is a miss too.

        Anything wrong with the file (missing, truncated, not a cache file, other format, wrong
        shapes, non-finite weights) is a miss; all but a missing file also warn, in one line. A
        miss claims ``path`` (:meth:`claim`: waiting first if another process is training it, then
        looking again) until :meth:`save` or :meth:`record`.
        """
        if not path.exists():
            self.claim(path)  # waits while another process trains this very model
            if not path.exists():
                return None  # ours to train; the claim is released by save() or record()
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(saved, dict) or saved.get("format") != FORMAT:
                raise ValueError("not a fewshot cache file of this version")
            state = saved["state_dict"]
            meta = json.loads(saved["meta"])
            if read_meta is not None:
                meta = read_meta(meta)
            snapshots = list(saved.get("snapshots", []))
            if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
                raise ValueError("non-finite weights")
            own = model.state_dict()  # check every shape first: a failed load is partial
            if set(state) != set(own) or any(tuple(state[k].shape) != tuple(own[k].shape)
                                             for k in own):
                raise ValueError("its weights do not fit this model (other names or shapes)")
            model.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 (any fault is a miss, never a crash)
            detail = " ".join(str(exc).split())[:80]
            self._warn_once(str(path), f"ignoring the unusable cache file {path.name} ({detail}); "
                            "retraining")
            self.claim(path)
            return None
        self.release(path)
        return {"meta": meta, "snapshots": snapshots}

    def save(self, path: Path, model: nn.Module, meta: dict, snapshots: list[dict] | None = None
             ) -> bool:
        """Write ``model``'s weights, ``meta`` (JSON-able) and optional weight ``snapshots``
        (state dicts) atomically; ``True`` if written, and this process's claim on ``path`` is
        released. Non-finite weights are never written. A directory that cannot be written warns
        once."""
        try:
            return self._save(path, model, meta, snapshots)
        finally:
            self.release(path)

    def _save(self, path: Path, model: nn.Module, meta: dict, snapshots: list[dict] | None
              ) -> bool:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
            self._warn_once(f"nonfinite:{path.name}",
                            f"not caching {path.name}: its weights are not finite")
            return False
        try:
            atomic_save({"format": FORMAT, "state_dict": state, "meta": json.dumps(meta),
                         "snapshots": list(snapshots or [])}, path)
        except OSError as exc:
            self._warn_once(f"dir:{path.parent}", f"the model cache {path.parent} cannot be "
                            f"written ({exc.strerror or exc}); models stay in memory only")
            return False
        return True

    def record(self, name: str, key: str, spec: dict, seconds: float, cached: bool) -> None:
        """Add one training (or cache hit) to the ledger, and to the ledger file if set. Releases
        any claim this process still holds on the model's file (a training that was not saved)."""
        self.release(self.path_for(name, key))
        entry = {"name": name, "key": key, "spec": spec, "seconds": round(seconds, 2),
                 "cached": cached, "time": time.time()}
        self.entries.append(entry)
        if self.ledger:
            try:
                with open(self.ledger, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry, default=str) + "\n")
            except OSError as exc:
                self._warn_once(f"ledger:{self.ledger}",
                                f"cannot write the training ledger {self.ledger}: {exc}")

    def summary(self) -> str:
        """One quiet line for a page: ``"3 models from the cache, 2 trained in 41 s"``."""
        return summary(self.entries)


@functools.lru_cache(maxsize=None)
def _shared(directory: Path, enabled: bool, ledger: Path | None) -> ModelCache:
    return ModelCache(directory, enabled=enabled, ledger=ledger)


def default() -> ModelCache:
    """The :class:`ModelCache` of the configured folder (``FEWSHOT_CACHE_DIR``, ``FEWSHOT_CACHE``,
    ``FEWSHOT_LEDGER``): one per setting, so every training of a process shares its ledger."""
    s = settings()
    return _shared(s.cache_dir, s.cache, s.ledger)


def summary(entries: list[dict]) -> str:
    """One quiet line for a page: ``"3 models from the cache, 2 trained in 41 s"``."""
    hits = sum(e["cached"] for e in entries)
    trained = [e for e in entries if not e["cached"]]
    seconds = sum(e["seconds"] for e in trained)
    parts = []
    if hits:
        parts.append(f"{hits} model{'s' * (hits != 1)} from the cache")
    if trained:
        parts.append(f"{len(trained)} trained in {seconds:.0f} s")
    return ", ".join(parts) if parts else "no models trained"


def read_ledger(path: str | Path) -> list[dict]:
    """The entries of a ``FEWSHOT_LEDGER`` file."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def duplicates(entries: list[dict]) -> dict[str, int]:
    """Keys trained (not loaded) more than once: ``{"name-key": times}``."""
    counts: dict[str, int] = {}
    for e in entries:
        if not e["cached"]:
            k = f"{e['name']}-{e['key']}"
            counts[k] = counts.get(k, 0) + 1
    return {k: n for k, n in counts.items() if n > 1}


def ledger_report(entries: list[dict]) -> str:
    """A Markdown-free text table of a ledger: one line per training, then the totals."""
    lines = [f"{'trained' if not e['cached'] else 'cached ':<8}{e['seconds']:>8.1f} s  {e['name']}"
             for e in entries]
    lines.append(summary(entries))
    return "\n".join(lines)


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--check-ledger":
        print("usage: python -m fewshot.cache --check-ledger LEDGER.jsonl", file=sys.stderr)
        return 2
    path = Path(argv[1])
    entries = read_ledger(path) if path.exists() else []
    print(ledger_report(entries))
    twice = duplicates(entries)
    for k, n in twice.items():
        print(f"TRAINED {n} TIMES: {k}")
    return 1 if twice else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
