"""The plan's arithmetic (no timing): seconds per training, rows over seeds, a model paid once (by the
first chapter, and by none if cached), the cache path it looks up, and the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import fewshot.plan as plan
from fewshot.config import PROFILES
from fewshot.plan import CHAPTERS, Row, Training, expand, row, train, training_seconds
from fewshot.recipes import METHODS, train_method
from fewshot.run import Run

QUICK = PROFILES["quick"]
RUN = Run(torch.device("cpu"), QUICK, 0, "")
BOOK = Path(__file__).resolve().parents[1] / "book"


def test_training_seconds_arithmetic() -> None:
    t = train("triplet", 2)
    r = train("triplet", 2, miner="random")
    c = plan.TRAINING_COST
    assert training_seconds(r, 1000, 500, QUICK, rate=100.0) == pytest.approx(10 * 1000 * c / 100)
    v = train("triplet", 2, miner="random", val=True)
    assert training_seconds(v, 1000, 500, QUICK, 100.0) == pytest.approx(
        10 * (1000 * c + 500 * plan.VALIDATION_COST) / 100)
    half = train("triplet", 2, miner="random", epochs=0.5)
    assert training_seconds(half, 1000, 0, QUICK, 100.0) == pytest.approx(5 * 1000 * c / 100)
    batch_all = plan.BATCH_ALL_COST  # the triplet loss over every triplet costs more per image
    assert t.miner == "all" and training_seconds(t, 1000, 0, QUICK, 100.0) == pytest.approx(
        10 * 1000 * batch_all / 100)
    soft = train("softmax", 32)
    assert training_seconds(soft, 1000, 0, QUICK, 100.0) == pytest.approx(10 * 1000 * c / 100)
    fine = train("softmax+triplet", 2, miner="random")  # the fine-tuning only: half the epochs
    assert training_seconds(fine, 1000, 0, QUICK, 100.0) == pytest.approx(5 * 1000 * c / 100)
    assert training_seconds(soft, 1000, 0, PROFILES["gpu-full"], 100.0) == pytest.approx(
        20 * 1000 * c / 100)
    with pytest.raises(ValueError, match="rate=0"):
        training_seconds(t, 1000, 0, QUICK, 0.0)


def test_rows_expand_over_seeds_and_pretraining_is_planned() -> None:
    r = row("arcface", 32)
    assert r.trainings(1) == [train("arcface", 32, "digits", val=True),
                              train("arcface", 32, "seen")]
    assert [t.seed for t in r.trainings(3)] == [0, 0, 1, 1, 2, 2]
    (soft, fine) = expand([train("softmax+triplet", 2, miner="batch_hard", val=True)], 1)
    assert soft == train("softmax", 2, val=True) and fine.method == "softmax+triplet"
    with pytest.raises(ValueError, match="'nope'"):
        train("nope", 2)
    with pytest.raises(ValueError, match="'pixels'"):
        train("triplet", 2, "pixels")


def test_a_model_is_paid_once_and_cached_is_free(tmp_path: Path) -> None:
    shared = train("triplet", 2, val=True)
    chapters = {"a": [shared, train("siamese", 2)], "b": [shared, row("triplet", 32)],
                "c": [train("arcface", 3)]}
    sizes = {"digits": 1000, "seen": 500, "characters": 4000}
    cached = tmp_path / "arcface.pt"
    cached.write_bytes(b"")
    plans = plan.plan(chapters, QUICK, 100.0, sizes, 200,
                      locate=lambda t: cached if t.method == "arcface" else tmp_path / "none.pt")
    a, b, c = plans
    assert [m.free for m in a.models] == ["", ""]
    assert [m.free for m in b.models] == ["earlier", "", ""]  # chapter a trained it
    assert [m.free for m in c.models] == ["cached"] and c.seconds == 0 and c.trained == 0
    assert b.models[2].images == 500  # the seen digits
    ledger = [{"name": "arcface", "key": "x", "cached": False, "seconds": 7.0},
              {"name": "none", "key": "y", "cached": True, "seconds": 1.0}]
    assert plan.measured(plans, ledger) == ([0.0, 0.0, 0.0], 7.0)  # arcface: "cached" here
    expected = training_seconds(train("triplet", 32, val=True), 1000, 200, QUICK, 100.0) + \
        training_seconds(train("triplet", 32, "seen"), 500, 200, QUICK, 100.0)
    assert b.seconds == pytest.approx(expected) and b.trained == 2
    three = plan.plan(chapters, PROFILES["full"], 100.0, sizes, 200)  # 3 seeds: 3 times the rows
    assert len(three[1].models) == 1 + 2 * PROFILES["full"].seeds
    text = plan.format_plan(plans, 100.0, QUICK)
    assert "quick profile" in text and re.search(r"^c\s+0\s+1\s+0 s$", text, flags=re.M)
    assert json.loads(plan.plan_json(plans, 100.0))["chapters"][2] == {
        "chapter": "c", "seconds": 0, "trained": 0, "free": 1}


def test_cache_path_is_the_one_train_method_writes(tiny: tuple, small_train: tuple) -> None:
    """If recipes changes how it keys a model, the plan would call every model uncached: this
    fails first."""
    x, y = tiny
    val = small_train
    for t, kw, spec in ((train("triplet", 2, epochs=0.1), {}, RUN.spec("triplet", 2, epochs=1)),
                        (train("siamese", 3, miner="random", val=True), {"val": val},
                         RUN.spec("siamese", 3, miner="random")),
                        (train("arcface", 2, scale=8.0, margin=0.2), {},
                         RUN.spec("arcface", 2, scale=8.0, margin=0.2)),
                        (train("supcon", 2, sampler="pk", shift=2.0), {},
                         RUN.spec("supcon", 2, sampler="pk", shift=2.0))):
        path = plan.cache_path(t, x, y, val if t.val else None, RUN)
        assert not path.exists()
        train_method(spec, x, y, progress=False, **kw)
        assert path.exists(), (t, sorted(p.name for p in path.parent.iterdir()))


def test_chapters_name_the_notebooks_and_methods_they_train() -> None:
    """The plan's table follows the book: one entry per notebook, and every method a notebook
    names in a training call is planned for it."""
    assert sorted(CHAPTERS) == sorted(p.stem for p in BOOK.glob("*.ipynb"))
    calls = 0
    for chapter, items in CHAPTERS.items():
        notebook = json.loads((BOOK / f"{chapter}.ipynb").read_text(encoding="utf-8"))
        source = "\n".join("".join(c["source"]) for c in notebook["cells"]
                           if c["cell_type"] == "code")
        planned = {t.method for t in expand(items, 1)}
        for method in re.findall(r'\.spec\(\s*"([\w+]+)"', source):
            assert method in METHODS and method in planned, (chapter, method)
            calls += 1
        assert all(isinstance(i, (Training, Row)) for i in items)
    assert calls >= 8  # the check saw the book's calls (loops over names are not seen)


def test_plan_command(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from fewshot.__main__ import main

    monkeypatch.setattr(plan, "throughput", lambda batch, seconds=2.0: 1000.0)  # no probe here
    monkeypatch.setattr("fewshot.__main__.run_plan", lambda run, fresh: plan.run_plan(
        run, rate=1000.0, fresh=fresh))
    assert main(["plan", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rate"] == 1000.0 and [c["chapter"] for c in out["chapters"]] == list(CHAPTERS)
    assert out["chapters"][0]["seconds"] == 0 and out["chapters"][2]["trained"] >= 1


def test_plan_beside_a_ledger(tiny: tuple, tmp_path: Path) -> None:
    """A ledger's trainings are matched to the chapter whose planned model has their cache key."""
    x, y = tiny
    models = {"digits": (x, y)}
    t = train("siamese", 2, miner="random")
    locate = lambda t: plan.cache_path(t, *models["digits"], None, RUN)  # noqa: E731
    plans = plan.plan({"a": [train("arcface", 3)], "b": [t]}, QUICK, 100.0,
                      {"digits": len(y), "seen": 0, "characters": 0}, 0, locate)
    path = locate(t)
    name, key = path.stem.rsplit("-", 1)
    ledger = [{"name": name, "key": key, "cached": False, "seconds": 3.0},
              {"name": name, "key": key, "cached": True, "seconds": 3.0}]
    assert plan.measured(plans, ledger) == ([0.0, 3.0], 0.0)
    text = plan.format_plan(plans, 100.0, QUICK, ledger)
    ratio = plans[1].seconds / 3.0
    assert re.search(rf"^b\s+1\s+0\s+\S+ s\s+3 s\s+{ratio:.2f}$", text, flags=re.M), text
