"""The book's methods by name: ``build``, ``train_method`` (determinism, the seed flow, bad input) and
the safe model cache as ``train_method`` uses it (corrupt, unwritable and malicious files, the ledger)."""

from __future__ import annotations

import math
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import fewshot
import fewshot.cache as cache
import fewshot.recipes as recipes
from fewshot.cache import CacheWarning
from fewshot.config import use_deterministic_kernels
from fewshot.data import stratified_subset
from fewshot.evaluate import evaluate
from fewshot.models import embed
from fewshot.config import PROFILES
from fewshot.recipes import METHODS, build, precision_validator, train_method
from fewshot.run import Run
from fewshot.tables import flat

SPEC = Run(torch.device("cpu"), PROFILES["quick"], 0, "").spec  # specs at the quick size, seed 0


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def cache_warnings(record: list) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, CacheWarning)]


# ---------------------------------------------------------------------------------------------
# build

@pytest.mark.parametrize("method", METHODS)
def test_build_gives_a_model_and_a_step_that_trains(method: str, tiny: tuple) -> None:
    images, labels = tiny
    if method == "protonet":  # one episode: 3 classes × (2 support + 2 queries), class by class
        idx = torch.cat([torch.nonzero(labels == c).flatten()[:4] for c in (0, 1, 2)])
        images, labels = images[idx], labels[idx]
    recipe = build(SPEC(method, 2, **({"k_shot": 2} if method == "protonet" else None or {})), 10)
    model = recipe.model
    assert model.get_embedding(images[:4]).shape == (4, 2)
    loss = recipe.step(model, images, labels)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_build_rejects_unknown_methods_and_miners() -> None:
    with pytest.raises(ValueError, match="'magic'"):
        build(SPEC("magic", 2), 10)
    with pytest.raises(ValueError, match="'batch_hard'"):  # a triplet miner for pairs
        build(SPEC("siamese", 2, miner="batch_hard"), 10)


def test_precision_validator() -> None:
    labels = torch.arange(5).repeat(4)
    images = torch.zeros(20, 1, 28, 28)
    images[:, 0, 0, 0] = 10.0 * labels  # the first pixel tells the class

    class FirstPixel(nn.Module):
        def __init__(self, noise: float) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))
            self.noise = noise

        def get_embedding(self, x: torch.Tensor) -> torch.Tensor:
            g = torch.Generator().manual_seed(0)
            return x.flatten(1)[:, :2] + self.noise * torch.randn(len(x), 2, generator=g)

    validate = precision_validator(images, labels)
    assert validate(FirstPixel(0.0)) == {"val_precision_at_1": 1.0}
    assert validate(FirstPixel(100.0))["val_precision_at_1"] < 0.6
    bad = images.clone()
    bad[0, 0, 3, 3] = math.nan
    with pytest.raises(ValueError, match="images holds 1 NaN"):
        precision_validator(bad, labels)


# ---------------------------------------------------------------------------------------------
# train_method: determinism, the seed flow, bad input

@pytest.mark.parametrize("method, miner", [("softmax", None), ("siamese", "all"), ("triplet", "random")])
def test_train_method_deterministic(method: str, miner: str | None, tiny: tuple) -> None:
    images, labels = tiny
    runs = [train_method(SPEC(method, 2, miner=miner, epochs=1, seed=s), images, labels, cache=False, progress=False)[0]
            for s in (5, 5, 6)]
    a, b, c = (_weights(m) for m in runs)
    assert same(a, b)
    assert not same(a, c)  # the seed matters
    assert not runs[0].training


@pytest.mark.parametrize("method", ["siamese", "triplet"])
def test_in_batch_training_is_deterministic_with_two_threads(method: str, tiny: tuple) -> None:
    """In-batch pairs/triplets sum gradients through ``emb[indices]``: with several threads that sum
    is only reproducible in torch's deterministic mode (which ``setup`` turns on)."""
    images, labels = tiny
    threads = torch.get_num_threads()
    use_deterministic_kernels()
    torch.set_num_threads(2)
    try:
        spec = SPEC(method, 2, epochs=1, seed=3)
        a, b = (_weights(train_method(spec, images, labels, cache=False, progress=False)[0])
                for _ in range(2))
    finally:
        torch.set_num_threads(threads)
    assert same(a, b)


def test_train_method_leaves_deterministic_mode_alone(tiny: tuple) -> None:
    """``torch.use_deterministic_algorithms`` is global process state: only ``setup`` sets it."""
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        train_method(SPEC("softmax", 2, epochs=1), *tiny, cache=False, progress=False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before, warn_only=True)


def test_the_run_seed_reaches_the_models_and_the_numbers(tiny: tuple, mnist: dict) -> None:
    images, labels = tiny
    idx = stratified_subset(mnist["test"][1], 200)  # 20 test digits of each class
    pool = mnist["test"][0][idx], mnist["test"][1][idx]

    def one_run(seed: int) -> tuple[dict, dict]:
        run = fewshot.setup(seed, verbose=False)
        model, _ = train_method(run.spec("siamese", 2, epochs=1), images, labels, cache=False,
                                progress=False)
        result = evaluate(model, query=pool, fewshot_pool=pool, settings=((5, 1),), episodes=20,
                          seed=run.seed)
        return _weights(model), flat(result)

    w0, e0 = one_run(0)
    w5, e5 = one_run(5)
    w0_again, e0_again = one_run(0)
    assert same(w0, w0_again) and e0 == e0_again  # setup(0) reproduces weights and numbers
    assert not same(w0, w5)  # setup(5) changes the weights ...
    assert e0 != e5  # ... and the numbers
    explicit, _ = train_method(SPEC("siamese", 2, epochs=1, seed=5), images, labels, cache=False, progress=False)
    assert same(_weights(explicit), w5)  # an explicit seed is the same as the run's seed


def test_softmax_triplet_fine_tunes_the_cached_softmax(tiny: tuple) -> None:
    model, history = train_method(SPEC("softmax+triplet", 2, epochs=2), *tiny, progress=False)
    assert [e["spec"]["method"] for e in cache.default().entries] == ["softmax", "softmax+triplet"]
    assert model.get_embedding(tiny[0][:3]).shape == (3, 2) and len(history.loss) == 1  # epochs // 2
    again, _ = train_method(SPEC("softmax+triplet", 2, epochs=2), *tiny, progress=False)
    assert [e["cached"] for e in cache.default().entries] == [False, False, True, True]
    assert same(_weights(model), _weights(again))


@pytest.mark.parametrize("method, kwargs", [
    ("arcface", {}), ("protonet", {"n_way": 5, "k_shot": 2, "n_query": 2}),
    ("triplet", {"miner": "batch_hard", "sampler": "pk"}), ("siamese", {"miner": "hardest_negative"}),
    ("supcon", {"sampler": "pk", "temperature": 0.2}),
    ("siamese", {"sampler": "pk", "reduction": "mean_active"}),
    ("triplet", {"reduction": "mean_active"}),
])
def test_other_methods_train(method: str, kwargs: dict, tiny: tuple) -> None:
    model, history = train_method(SPEC(method, 3, epochs=1, **kwargs), *tiny, cache=False, progress=False)
    assert len(history.loss) == 1 and math.isfinite(history.loss[0])
    assert embed(model, tiny[0][:5]).shape == (5, 3)


def test_train_method_bad_input(tiny: tuple) -> None:
    images, labels = tiny
    kw = {"epochs": 1}
    with pytest.raises(ValueError, match="'magic'"):
        train_method(SPEC("magic", 2, **kw), images, labels)
    with pytest.raises(ValueError, match="'hardest'"):
        train_method(SPEC("triplet", 2, miner="hardest", **kw), images, labels)
    with pytest.raises(ValueError, match="sampler='batch'"):
        train_method(SPEC("triplet", 2, sampler="batch", **kw), images, labels)
    with pytest.raises(ValueError, match="miner='all'.*'softmax'"):
        train_method(SPEC("softmax", 2, miner="all", **kw), images, labels)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=f"margin={bad!r}"):
            train_method(SPEC("siamese", 2, margin=bad, **kw), images, labels)
    with pytest.raises(ValueError, match="epochs=-1"):
        train_method(SPEC("softmax", 2, epochs=-1), images, labels, cache=False)
    with pytest.raises(ValueError, match="shift=-1"):
        train_method(SPEC("supcon", 2, shift=-1.0, **kw), images, labels)
    with pytest.raises(ValueError, match="embed_dim=0"):
        train_method(SPEC("softmax", 0, **kw), images, labels)
    with pytest.raises(ValueError, match="seed=-1"):
        train_method(SPEC("softmax", 2, seed=-1, **kw), images, labels)
    with pytest.raises(ValueError, match="2 classes"):
        train_method(SPEC("softmax", 2, **kw), images[labels == 0], labels[labels == 0])
    nan_images = images.clone()
    nan_images[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="images holds 1 NaN"):
        train_method(SPEC("siamese", 2, **kw), nan_images, labels)


# ---------------------------------------------------------------------------------------------
# the cache as train_method uses it

def test_cache_trains_once_then_loads(tiny: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path))
    images, labels = tiny
    first, history = train_method(SPEC("siamese", 2, epochs=1), images, labels, progress=False)
    assert len(list(tmp_path.glob("siamese-*.pt"))) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("the second call should load the cached model, not train")

    monkeypatch.setattr(recipes, "fit", no_training)
    capsys.readouterr()
    second, history2 = train_method(SPEC("siamese", 2, epochs=1), images, labels, progress=False)
    assert capsys.readouterr().out == ""  # no line per cache hit: pages read as a book
    assert history2.loss == history.loss and history2.seconds == pytest.approx(history.seconds)
    assert not second.training
    assert torch.equal(embed(first, images[:20]), embed(second, images[:20]))
    assert [e["cached"] for e in cache.default().entries] == [False, True]  # trained once, loaded once
    assert cache.duplicates(cache.default().entries) == {}
    assert cache.default().summary().startswith("1 model from the cache, 1 trained in ")
    # the key covers the whole spec: another margin, miner or sampler is another entry, so it trains
    for other in ({"margin": 2.0}, {"miner": "random"}, {"sampler": "pk"}, {"shift": 1.0}):
        with pytest.raises(AssertionError, match="should load"):
            train_method(SPEC("siamese", 2, epochs=1, **other), images, labels, progress=False)


def test_cache_off(tiny: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path))
    on = cache.default()
    train_method(SPEC("softmax", 2, epochs=1), *tiny, cache=False, progress=False)
    monkeypatch.setenv("FEWSHOT_CACHE", "0")
    off = cache.default()
    assert off is not on and not off.enabled
    train_method(SPEC("softmax", 2, epochs=1), *tiny, progress=False)
    assert not any(tmp_path.iterdir())
    assert [e["cached"] for e in on.entries + off.entries] == [False, False]  # still in the ledgers


def test_training_modules_cover_what_decides_a_model() -> None:
    """The key hashes the source of every module the recipes' training depends on, including the
    metrics behind the cached validation history (``evaluate``)."""
    import ast

    package = Path(recipes.__file__).parent

    def imports(name: str) -> set[str]:
        tree = ast.parse((package / f"{name}.py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {node.module} if node.module else {a.name for a in node.names}
        return found

    closure, todo = set(), ["recipes"]
    while todo:
        for dep in imports(todo.pop()) - closure:
            closure.add(dep)
            todo.append(dep)
    assert "evaluate" in recipes.TRAINING_MODULES and "recipes" in recipes.TRAINING_MODULES
    # data enters the key as tensors; cache (and files, its atomic write) only stores what the
    # others produce
    decides = closure - {"cache", "data", "files"}
    assert decides <= set(recipes.TRAINING_MODULES), decides - set(recipes.TRAINING_MODULES)


class Evil:
    """A pickle that runs code when loaded: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _corrupt(kind: str, path: Path, other: Path | None) -> None:
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(os.urandom(2048))
    elif kind == "other version":
        saved = torch.load(path, weights_only=True)
        torch.save({**saved, "format": cache.FORMAT - 1}, path)
    elif kind == "wrong shape":
        shutil.copyfile(other, path)  # a cached 2-D model where the 32-D one belongs


@pytest.mark.parametrize("kind", ["truncated", "garbage", "other version", "wrong shape"])
def test_corrupt_cache_file_is_a_miss_then_overwritten(kind: str, tiny: tuple, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path))
    images, labels = tiny
    other = None
    if kind == "wrong shape":
        train_method(SPEC("siamese", 2, epochs=1), images, labels, progress=False)
        other = next(tmp_path.glob("siamese-*-2d-*.pt"))
    reference, _ = train_method(SPEC("siamese", 32, epochs=1), images, labels, progress=False)
    (path,) = tmp_path.glob("siamese-*-32d-*.pt")
    _corrupt(kind, path, other)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model, _ = train_method(SPEC("siamese", 32, epochs=1), images, labels, progress=False)
    messages = cache_warnings(record)
    assert len(messages) == 1 and "\n" not in messages[0] and path.name in messages[0], messages
    # retrained from the same seeded start: a failed load left nothing behind in the model
    assert same(_weights(model), _weights(reference))
    assert [e["cached"] for e in cache.default().entries][-1] is False
    fresh = build(SPEC("siamese", 32), 10).model
    assert cache.default().load(path, fresh) is not None  # overwritten with a good file
    train_method(SPEC("siamese", 32, epochs=1), images, labels, progress=False)
    assert cache.default().entries[-1]["cached"] is True


def test_malicious_cache_file_does_not_run(tiny: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path / "cache"))
    images, labels = tiny
    train_method(SPEC("softmax", 2, epochs=1), images, labels, progress=False)
    (path,) = (tmp_path / "cache").glob("softmax-*.pt")
    marker = tmp_path / "pwned"
    saved = torch.load(path, weights_only=True)
    torch.save({**saved, "meta": Evil(marker)}, path)
    # the payload is real: an unsafe load runs it
    probe = tmp_path / "probe.pt"
    torch.save({"x": Evil(tmp_path / "ran")}, probe)
    torch.load(probe, weights_only=False)
    assert (tmp_path / "ran").exists()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model, _ = train_method(SPEC("softmax", 2, epochs=1), images, labels, progress=False)
    assert not marker.exists()  # never executed
    assert len(cache_warnings(record)) == 1
    assert cache.default().entries[-1]["cached"] is False and model.get_embedding(images[:2]).shape == (2, 2)


def _unwritable_dirs(tmp_path: Path) -> list[Path]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    dirs = [blocker / "models"]  # a path through a regular file
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        (ro / "probe").touch()  # root ignores the mode bits: only test it where it holds
        (ro / "probe").unlink()
    except OSError:
        dirs.append(ro)
    return dirs


def test_unwritable_cache_dir_warns_once_and_returns_the_model(tiny: tuple, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = tiny
    try:
        for directory in _unwritable_dirs(tmp_path):
            monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(directory))
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("always")
                results = [train_method(SPEC("softmax", 2, epochs=1, seed=s), images, labels,
                                        progress=False) for s in (0, 1)]
            messages = cache_warnings(record)
            assert len(messages) == 1 and "cannot be written" in messages[0], (directory, messages)
            for model, history in results:
                assert model.get_embedding(images[:2]).shape == (2, 2) and len(history.loss) == 1
            assert not any(p.name.endswith(".pt") for p in tmp_path.rglob("*") if p.is_file())
    finally:
        (tmp_path / "read-only").chmod(0o755)


def test_reduction_and_temperature_reach_the_loss() -> None:
    from fewshot.losses import ContrastiveLoss, SupConLoss, TripletLoss
    for method, kind in (("siamese", ContrastiveLoss), ("triplet", TripletLoss)):
        step = build(SPEC(method, 2, reduction="mean_active"), 10).step
        loss = next(c.cell_contents for c in step.__closure__ if isinstance(c.cell_contents, kind))
        assert loss.reduction == "mean_active"
    step = build(SPEC("supcon", 2, temperature=0.3), 10).step
    loss = next(c.cell_contents for c in step.__closure__ if isinstance(c.cell_contents, SupConLoss))
    assert loss.temperature == 0.3
    assert recipes.metric_of("supcon") == "cosine"


def test_metric_training_records_the_active_fraction(tiny: tuple) -> None:
    _, history = train_method(SPEC("triplet", 2, epochs=2, reduction="mean_active"), *tiny, cache=False, progress=False)
    active = history.metrics["active_fraction"]
    assert len(active) == 2 and all(0.0 <= a <= 1.0 for a in active)


def test_shift_reaches_the_training_images(tiny: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = tiny
    seen = []

    def spy(model, step, x, y, **kw):  # one batch through the step train_method built
        idx = torch.arange(16)
        batch = x[idx]
        seen.append(batch)
        step(model, batch, y[idx])
        return recipes.History()

    monkeypatch.setattr(recipes, "fit", spy)
    monkeypatch.setattr(recipes, "embedding_step", lambda loss: (
        lambda model, batch, y: seen.append(batch) or batch.sum()))
    for shift in (None, 2.0):
        train_method(SPEC("supcon", 2, epochs=1, shift=shift), images, labels, cache=False,
                     progress=False)
    (given0, stepped0), (given2, stepped2) = seen[:2], seen[2:]
    assert torch.equal(given0, stepped0)  # no shift: the images as they are
    assert not torch.equal(given2, stepped2) and stepped2.shape == given2.shape
