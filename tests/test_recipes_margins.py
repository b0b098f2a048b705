"""The margin-head recipes: head weights are trained, SphereFace's λ anneals, and the CLI takes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fewshot import recipes
from fewshot.config import PROFILES
from fewshot.run import Run
from fewshot.compare import COLUMNS
from fewshot.margins import sphereface_lambda

SPEC = Run(torch.device("cpu"), PROFILES["quick"], 0, "").spec


@pytest.mark.parametrize("method", recipes.MARGIN_METHODS)
def test_one_step_changes_the_head_weight(method: str, small_train: tuple) -> None:
    x, y = small_train
    batch = PROFILES["quick"].batch_size
    x, y = x[:batch], y[:batch]  # exactly one batch: one optimiser step
    assert len(y.unique()) >= 2
    model, history = recipes.train_method(SPEC(method, 2, epochs=1), x, y, cache=False,
                                          progress=False)
    before = history.snapshots[0]["head.weight"]  # the snapshot at epoch 0 (2-D model)
    after = model.head.weight.detach().cpu()
    assert before.shape == after.shape == (len(y.unique()), 2)
    assert not torch.allclose(before, after), f"{method}: the head's weight never reached the optimiser"
    assert recipes.metric_of(method) == "cosine"


def test_sphereface_lambda_schedule_anneals_to_its_minimum() -> None:
    for epochs in (1, 2, 10, 20):
        values = [recipes.sphereface_lambda_schedule(e, epochs) for e in range(epochs + 1)]
        assert values[0] == pytest.approx(1000.0)
        assert all(a >= b for a, b in zip(values, values[1:])), values
        assert values[-1] == pytest.approx(5.0), values
        # the minimum by the middle of the run (SPHEREFACE_LAMBDA["reach"])
        assert values[max(1, epochs // 2)] == pytest.approx(5.0), values
    # the reference's per-iteration constants stepped per epoch would stay near plain softmax
    assert sphereface_lambda(10) > 400


def test_sphereface_recipe_steps_lambda_each_epoch() -> None:
    epochs = 10
    recipe = recipes.build(SPEC("sphereface", 2, epochs=epochs), 10)
    seen = [recipe.model.head.lam]
    for epoch in range(epochs):
        recipe.on_epoch(epoch, recipe.model)
        seen.append(recipe.model.head.lam)
    assert seen[0] == pytest.approx(1000.0)
    assert all(a > b for a, b in zip(seen, seen[1:epochs // 2 + 1])), seen
    assert seen[-1] == pytest.approx(5.0)


def test_sphereface_trained_model_ends_at_minimum_lambda(small_train: tuple) -> None:
    x, y = small_train
    model, _ = recipes.train_method(SPEC("sphereface", 2, epochs=2), x, y, cache=False,
                                    progress=False)
    assert model.head.lam == pytest.approx(5.0)


def test_warmup_ramps_the_margin_in() -> None:
    recipe = recipes.build(SPEC("arcface", 2, warmup=4), 10)
    head = recipe.model.head
    assert head.margin_scale == 0.0
    ramp = []
    for epoch in range(6):
        recipe.on_epoch(epoch, recipe.model)
        ramp.append(head.margin_scale)
    assert ramp == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert recipes.build(SPEC("cosface", 2), 10).on_epoch is None  # no warm-up: margin from the start


def test_low_dimension_settings_are_derived() -> None:
    low = recipes.margin_head_settings("arcface", 2, 10)
    assert low["scale"] == 7.0 and low["margin"] == pytest.approx(0.191)
    assert recipes.margin_head_settings("cosface", 32, 10) == {"scale": 16.0, "margin": 0.35}
    assert recipes.margin_head_settings("sphereface", 2, 10) == {"margin": 4}


def test_cli_compare_margin_methods(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in {"FEWSHOT_PROFILE", "FEWSHOT_DEVICE", "FEWSHOT_CACHE"}}
    env.update(FEWSHOT_FAST="1", FEWSHOT_OFFLINE="1", FEWSHOT_CACHE_DIR=str(tmp_path),
               OMP_NUM_THREADS="1", FEWSHOT_PROGRESS="0")
    args = ["compare", "--methods", "arcface", "cosface", "--dims", "2", "--epochs", "1", "--json",
            "--no-cache"]
    proc = subprocess.run([sys.executable, "-m", "fewshot", *args], capture_output=True, text=True,
                          env=env, timeout=900, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)
    assert [r["method"] for r in rows] == ["arcface", "cosface"]
    for r in rows:
        assert set(r) == set(COLUMNS)
        assert r["metric"] == "cosine" and r["embed_dim"] == 2
        for key in ("precision_at_1", "map_at_r", "fewshot_5way_1shot", "fewshot_5way_5shot"):
            assert 0.0 <= r[key] <= 1.0, (key, r[key])
