"""The model cache on its own: keys, atomic save and safe load (every fault a miss with one warning),
non-finite weights never cached, and the training ledger with its ``--check-ledger`` command."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import fewshot.cache as cache
from fewshot.cache import CacheWarning


def model(seed: int = 0, dim: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, dim), nn.BatchNorm1d(dim))


def weights(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def caught(fn) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = fn()
    return result, [str(w.message) for w in record if issubclass(w.category, CacheWarning)]


def test_save_then_load_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "m-key.pt"
    src = model(1)
    snaps = [weights(model(2))]
    assert cache.default().save(path, src, {"history": {"loss": [1.5]}}, snapshots=snaps)
    assert [p.name for p in tmp_path.iterdir()] == ["m-key.pt"]  # no temporary file left behind
    dst = model(3)
    saved, messages = caught(lambda: cache.default().load(path, dst))
    assert messages == []
    assert saved["meta"] == {"history": {"loss": [1.5]}}
    assert all(torch.equal(a, b) for a, b in zip(weights(dst).values(), weights(src).values()))
    assert all(torch.equal(saved["snapshots"][0][k], snaps[0][k]) for k in snaps[0])
    raw = torch.load(path, weights_only=True)  # only tensors and JSON-able data
    assert raw["format"] == cache.FORMAT and isinstance(raw["meta"], str)


def test_missing_file_is_a_silent_miss(tmp_path: Path) -> None:
    result, messages = caught(lambda: cache.default().load(tmp_path / "nothing.pt", model()))
    assert result is None and messages == []


@pytest.mark.parametrize("kind", ["truncated", "garbage", "other version", "wrong shape", "not a dict",
                                  "non-finite"])
def test_bad_file_is_a_miss_with_one_warning_and_leaves_the_model_alone(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "m-key.pt"
    cache.default().save(path, model(1), {})
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    elif kind == "other version":
        torch.save({**torch.load(path, weights_only=True), "format": cache.FORMAT + 1}, path)
    elif kind == "wrong shape":
        cache.default().save(path, model(1, dim=5), {})
    elif kind == "not a dict":
        torch.save([torch.zeros(2)], path)
    elif kind == "non-finite":
        saved = torch.load(path, weights_only=True)
        saved["state_dict"]["0.weight"][0, 0] = math.nan
        torch.save(saved, path)
    target = model(7)
    before = weights(target)
    result, messages = caught(lambda: cache.default().load(path, target))
    assert result is None
    assert len(messages) == 1 and "\n" not in messages[0] and "m-key.pt" in messages[0]
    assert all(torch.equal(before[k], v) for k, v in weights(target).items())  # nothing half-loaded
    _, again = caught(lambda: cache.default().load(path, target))
    assert again == []  # one warning per file, not one per attempt


def test_non_finite_weights_are_never_cached(tmp_path: Path) -> None:
    m = model(1)
    with torch.no_grad():
        m[0].weight[1, 2] = math.inf
    path = tmp_path / "nan-key.pt"
    written, messages = caught(lambda: cache.default().save(path, m, {}))
    assert written is False and not path.exists() and not any(tmp_path.iterdir())
    assert len(messages) == 1 and "not finite" in messages[0]


def test_unwritable_directory_warns_once(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    results, messages = caught(lambda: [cache.default().save(blocker / "sub" / f"m{i}-key.pt", model(), {})
                                        for i in range(3)])
    assert results == [False, False, False]
    assert len(messages) == 1 and "cannot be written" in messages[0] and "in memory" in messages[0]


def test_enabled_and_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path))
    assert cache.default().directory == tmp_path and cache.default().path_for("a", "k") == tmp_path / "a-k.pt"
    assert cache.default().enabled
    monkeypatch.setenv("FEWSHOT_CACHE", "0")
    assert not cache.default().enabled
    monkeypatch.setenv("FEWSHOT_CACHE", "sometimes")
    with pytest.raises(ValueError, match="FEWSHOT_CACHE='sometimes'"):
        cache.default().enabled


def test_make_key_covers_spec_data_and_code(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.arange(6.0)
    key = cache.make_key({"a": 1, "miner": "all"}, (x,), ("train",))
    assert key == cache.make_key({"miner": "all", "a": 1}, (x.clone(),), ("train",))  # order-free, stable
    assert key != cache.make_key({"a": 1, "miner": "random"}, (x,), ("train",))
    assert key != cache.make_key({"a": 1, "miner": "all"}, (x + 1,), ("train",))
    assert key != cache.make_key({"a": 1, "miner": "all"}, (x.view(2, 3),), ("train",))  # shape counts
    assert key != cache.make_key({"a": 1, "miner": "all"}, (x,), ("train", "evaluate"))
    monkeypatch.setattr(cache, "FORMAT", cache.FORMAT + 1)
    assert key != cache.make_key({"a": 1, "miner": "all"}, (x,), ("train",))


def test_source_hash_follows_the_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("a = 1\n")
    monkeypatch.setattr(cache, "__file__", str(tmp_path / "cache.py"))
    before = cache.source_hash(("train",))
    (tmp_path / "train.py").write_text("a = 2\n")
    assert cache.source_hash(("train",)) != before


# ---------------------------------------------------------------------------------------------
# the ledger

def test_record_and_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache.default().summary() == "no models trained"
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("FEWSHOT_LEDGER", str(ledger))
    cache.default().record("siamese-2d", "k1", {"method": "siamese"}, 12.345, cached=False)
    cache.default().record("softmax-2d", "k2", {"method": "softmax"}, 20.0, cached=False)
    cache.default().record("siamese-2d", "k1", {"method": "siamese"}, 12.345, cached=True)
    entry = cache.default().entries[0]
    assert (entry["name"], entry["key"], entry["spec"], entry["seconds"], entry["cached"]) == (
        "siamese-2d", "k1", {"method": "siamese"}, 12.35, False)
    assert cache.default().summary() == "1 model from the cache, 2 trained in 32 s"
    assert cache.summary(cache.default().entries[:1]) == "1 trained in 12 s"
    assert cache.summary([cache.default().entries[2]] * 3) == "3 models from the cache"
    assert cache.read_ledger(ledger) == json.loads(json.dumps(cache.default().entries))  # the same, on disk
    assert cache.duplicates(cache.default().entries) == {}  # trained once, loaded once
    report = cache.ledger_report(cache.default().entries)
    assert report.splitlines()[-1] == cache.default().summary() and len(report.splitlines()) == 4


def test_duplicates_finds_a_key_trained_twice() -> None:
    cache.default().record("a", "k1", {}, 1.0, cached=False)
    cache.default().record("a", "k2", {}, 1.0, cached=False)
    cache.default().record("a", "k1", {}, 1.0, cached=True)
    assert cache.duplicates(cache.default().entries) == {}
    cache.default().record("a", "k1", {}, 1.0, cached=False)
    cache.default().record("a", "k1", {}, 1.0, cached=False)
    assert cache.duplicates(cache.default().entries) == {"a-k1": 3}


def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fewshot.cache", "--check-ledger", str(path)],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])


def test_check_ledger_command(tmp_path: Path) -> None:
    def entry(key: str, cached: bool) -> str:
        return json.dumps({"name": "siamese", "key": key, "spec": {}, "seconds": 2.0, "cached": cached,
                           "time": 0.0})

    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text("\n".join([entry("k1", False), entry("k1", True), entry("k2", False)]) + "\n")
    bad.write_text("\n".join([entry("k1", False), entry("k2", False), entry("k1", False)]) + "\n")
    ok = _check(good)
    assert ok.returncode == 0, ok.stderr
    assert "1 model from the cache, 2 trained in 4 s" in ok.stdout and "TRAINED" not in ok.stdout
    dup = _check(bad)
    assert dup.returncode == 1
    assert "TRAINED 2 TIMES: siamese-k1" in dup.stdout



def test_check_ledger_usage_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cache._main([]) == 2 and "usage" in capsys.readouterr().err
    assert cache._main(["--check-ledger", str(tmp_path / "none.jsonl")]) == 0  # nothing trained yet
    assert "no models trained" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# Two processes, one model: a miss claims the file until it is saved, and another process waits.

ROOT = Path(__file__).resolve().parents[1]
WAITER = """
import sys, time
from pathlib import Path
import torch
import fewshot.cache as cache
path = Path(sys.argv[1])
m = torch.nn.Linear(4, 3)
start = time.monotonic()
print("waiting", flush=True)
got = cache.default().load(path, m)
print("hit" if got is not None else "miss", f"{time.monotonic() - start:.1f}", flush=True)
if got is not None:
    print(float(m.weight.sum()))
"""


def test_a_miss_claims_the_file_and_another_process_waits_then_loads(tmp_path: Path) -> None:
    path = tmp_path / "m-key.pt"
    mine = nn.Linear(4, 3)
    assert cache.default().load(path, mine) is None  # a miss: this process claims the file
    assert str(path) in cache.default()._claims and cache.lock_path(path).exists()
    proc = subprocess.Popen([sys.executable, "-c", WAITER, str(path)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={"PATH": "", "PYTHONPATH": str(ROOT),
                                                      "HOME": str(tmp_path)})
    try:
        assert proc.stdout.readline().strip() == "waiting"
        import time
        time.sleep(3.0)  # it would have missed and gone on to train by now
        assert proc.poll() is None  # still waiting for this process's training
        with torch.no_grad():
            mine.weight.fill_(0.5)
        assert cache.default().save(path, mine, {"x": 1})
        assert str(path) not in cache.default()._claims  # released by the save
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    verdict, seconds, total = out.split()
    assert verdict == "hit" and float(seconds) >= 3.0  # it waited, then loaded our weights
    assert float(total) == pytest.approx(0.5 * 12)


def test_claims_are_released_by_record_and_a_hit_claims_nothing(tmp_path: Path) -> None:
    path = cache.default().path_for("m", "key")
    assert cache.default().load(path, nn.Linear(4, 3)) is None and str(path) in cache.default()._claims
    cache.default().record("m", "key", {"a": 1}, 0.1, cached=False)  # trained, not saved (e.g. unwritable)
    assert str(path) not in cache.default()._claims
    assert cache.default().save(path, nn.Linear(4, 3), {})
    assert cache.default().load(path, nn.Linear(4, 3)) is not None and not cache.default()._claims
    assert cache.default().claim(path) and cache.default().claim(path)  # a second claim by the holder: no deadlock
    cache.default().release(path)
    cache.default().release(path)  # releasing twice is harmless
    assert not cache.default()._claims


def test_an_unlockable_directory_goes_on_without_the_lock(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    path = blocker / "m-key.pt"
    (got, warned) = caught(lambda: cache.default().load(path, nn.Linear(4, 3)))
    assert got is None and len(warned) == 1 and "cannot be written" in warned[0]
    assert not cache.default()._claims


TRAINER = """
import sys
import torch
from fewshot.data import load_mnist, stratified_subset
from fewshot.recipes import train_method
from fewshot.run import setup
torch.set_num_threads(1)
run = setup(verbose=False)
x, y = load_mnist("train")
idx = stratified_subset(y, 640, seed=1)
model, history = train_method(run.spec("triplet", 2, epochs=2), x[idx], y[idx], progress=False)
print(float(sum(p.sum() for p in model.parameters())))
"""


def test_two_processes_train_a_shared_model_once(tmp_path: Path) -> None:
    """Two chapters that need one model, at the same time: it is trained once; the ledger says so."""
    ledger = tmp_path / "ledger.jsonl"
    env = {"PATH": "", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "FEWSHOT_FAST": "1",
           "FEWSHOT_OFFLINE": "1", "FEWSHOT_CACHE_DIR": str(tmp_path / "models"),
           "FEWSHOT_LEDGER": str(ledger), "FEWSHOT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", TRAINER], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    entries = cache.read_ledger(ledger)
    assert sorted(e["cached"] for e in entries) == [False, True]  # trained once, loaded once
    assert cache.duplicates(entries) == {}
    assert outs[0][0] == outs[1][0]  # the same weights in both processes
