"""``python -m fewshot compare``: JSON on stdout, the readable table, and argument checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fewshot.__main__ as cli
from fewshot.compare import COLUMNS, compare, format_table

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
        assert r["embed_dim"] == 2
        for key in ("precision_at_1", "map_at_r", "fewshot_5way_1shot", "fewshot_5way_5shot"):
            assert 0.0 <= r[key] <= 1.0, (key, r[key])
        for key in ("fewshot_5way_1shot_ci95", "fewshot_5way_5shot_ci95"):
            assert 0.0 <= r[key] < 0.5, (key, r[key])
        assert r["train_seconds"] > 0
        assert r["precision_at_1"] > 0.15  # one epoch already beats chance (0.1)
    assert "profile=ci" in proc.stderr  # setup's line went to stderr
    assert not any(cache.iterdir())  # --no-cache: nothing trained was saved


def test_readable_table(json_run: tuple, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                        mnist: dict) -> None:
    """Without --json the same rows print as a table (the rows of the JSON run are reused)."""
    rows = json.loads(json_run[0].stdout)
    calls = []

    def fake_compare(methods, dims, **kwargs):
        calls.append((list(methods), list(dims), kwargs))
        return rows

    monkeypatch.setattr(cli, "compare", fake_compare)
    assert cli.main(ARGS) == 0
    assert calls == [(["softmax", "siamese"], [2], {"seed": 0, "epochs": 1, "cache": False})]
    out = capsys.readouterr().out
    assert out.strip() == format_table(rows)
    lines = out.strip().splitlines()
    assert len(lines) == 4
    for word in ("method", "sampling", "dim", "P@1", "MAP@R", "5w1s", "5w5s", "train s"):
        assert word in lines[0]
    assert set(lines[1]) == {"-"}
    for line, row in zip(lines[2:], rows):
        method, sampling, dim = line.split()[:3]  # the sampling column reads "–" for softmax
        assert [method, dim] == [row["method"], "2"]
        assert sampling == ("–" if row["method"] == "softmax" else row["sampling"])
        assert f"{row['precision_at_1']:.3f}" in line and f"{row['map_at_r']:.3f}" in line
        assert f"{100 * row['fewshot_5way_1shot']:.1f} ±" in line


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture) -> None:
    for bad in (["compare", "--dims", "0"], ["compare", "--methods", "arcface"], []):
        with pytest.raises(SystemExit) as exc:
            cli.main(bad)
        assert exc.value.code == 2
    assert "arcface" in capsys.readouterr().err


def test_compare_rejects_unknown_methods() -> None:
    with pytest.raises(ValueError, match="'arcface'"):
        compare(["softmax", "arcface"], [2])
