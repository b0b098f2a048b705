"""Chapter 8's pieces: the prototypical loss by hand, episodes as training batches, and the
``python -m fewshot oneshot`` command line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fewshot.__main__ import main
from fewshot.evaluate import Score
from fewshot import recipes
from fewshot.config import PROFILES
from fewshot.oneshot import (CHARACTER_ALTERNATIVES, CHARACTER_METHODS, ONESHOT_COLUMNS,
                             ONESHOT_SETTINGS, CharacterResult, character_spec, evaluation_halves,
                             extra_of, methods_markdown, metric_markdown, oneshot_markdown,
                             sampler_of)
from fewshot.run import Run
from fewshot.tables import flat
from fewshot.protocol import verification_splits
from fewshot.episodes import EpisodeBatches
from fewshot.losses import prototypical_loss
from fewshot.train import episode_step

ROOT = Path(__file__).resolve().parents[1]


# -------------------------------------------------------------------------------------------
# The prototypical loss, computed on paper


def test_prototypical_loss_two_way_one_shot_in_1d() -> None:
    # prototypes c0 = 0, c1 = 2 (K = 1: the support images themselves)
    support = torch.tensor([[[0.0]], [[2.0]]], dtype=torch.float64)  # (N=2, K=1, D=1)
    query = torch.tensor([[[0.5]], [[2.0]]], dtype=torch.float64)  # (N=2, Q=1, D=1)
    # query of class 0 at 0.5: squared distances 0.25 and 2.25 → logits (−0.25, −2.25)
    #   loss = −log(e^−0.25 / (e^−0.25 + e^−2.25)) = log(1 + e^−2)
    # query of class 1 at 2: squared distances 4 and 0 → logits (−4, 0): loss = log(1 + e^−4)
    per_query = [math.log(1 + math.exp(-2)), math.log(1 + math.exp(-4))]
    none = prototypical_loss(support, query, reduction="none")
    assert none.tolist() == pytest.approx(per_query, rel=1e-6)
    assert prototypical_loss(support, query).item() == pytest.approx(sum(per_query) / 2, rel=1e-6)
    assert prototypical_loss(support, query, "sum").item() == pytest.approx(sum(per_query), rel=1e-6)


def test_prototypical_loss_two_way_in_2d_uses_squared_distance() -> None:
    support = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]]], dtype=torch.float64)  # c0, c1
    query = torch.tensor([[[0.0, 0.5]], [[1.0, 1.0]]], dtype=torch.float64)
    # class-0 query (0, 0.5): d² = 0.25 to c0, 1 + 0.25 = 1.25 to c1 → log(1 + e^−1)
    # class-1 query (1, 1): d² = 2 to c0, 0 to c1 → log(1 + e^−2)
    # (plain distances would give 0.5 vs 1.118 and log(1 + e^−0.618), log(1 + e^−1.414))
    expected = [math.log1p(math.exp(-1)), math.log1p(math.exp(-2))]
    assert prototypical_loss(support, query, "none").tolist() == pytest.approx(expected, rel=1e-9)


def test_prototypical_loss_prototype_is_the_support_mean() -> None:
    # K = 2: class 0's support at 0 and 2 → prototype 1; class 1's at 2 and 4 → prototype 3
    support = torch.tensor([[[0.0], [2.0]], [[2.0], [4.0]]], dtype=torch.float64)
    query = torch.tensor([[[2.0]], [[3.5]]], dtype=torch.float64)
    # class-0 query at 2 is equidistant (d² = 1) from both prototypes: loss log 2
    # class-1 query at 3.5: d² 6.25 and 0.25 → log(1 + e^−6)
    expected = [math.log(2), math.log1p(math.exp(-6))]
    assert prototypical_loss(support, query, "none").tolist() == pytest.approx(expected, rel=1e-9)


def test_prototypical_loss_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="support"):
        prototypical_loss(torch.zeros(2, 1, 3), torch.zeros(3, 1, 3))
    with pytest.raises(ValueError, match="support"):
        prototypical_loss(torch.zeros(2, 3), torch.zeros(2, 1, 3))


# -------------------------------------------------------------------------------------------
# Episodes as training batches


def test_episode_batches_are_class_by_class_support_then_query() -> None:
    shuffle = torch.randperm(60, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(10).repeat_interleave(6)[shuffle]
    n, k, q = 4, 2, 3
    batches = list(EpisodeBatches(labels, n, k, q, episodes=7, seed=0))
    assert len(batches) == 7
    for batch in batches:
        assert len(batch) == n * (k + q)
        assert len(set(batch)) == len(batch)  # no image is both support and query
        by_class = labels[torch.tensor(batch)].view(n, k + q)
        assert (by_class == by_class[:, :1]).all()  # each row is one class
        assert len(by_class[:, 0].unique()) == n  # N different classes
    again = list(EpisodeBatches(labels, n, k, q, episodes=7, seed=0))
    assert again == batches  # seeded


class Identity(torch.nn.Module):
    def get_embedding(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def test_episode_step_splits_each_class_into_k_support_and_the_rest_query() -> None:
    # 2 classes × (K=1 support + Q=1 query) in EpisodeBatches' layout: s0, q0, s1, q1
    images = torch.tensor([[0.0], [0.5], [2.0], [2.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    loss = episode_step(k_shot=1)(Identity(), images, labels)
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-4))) / 2  # as by hand above
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # K=2 reads the first two of each class as support
    images = torch.tensor([[0.0], [2.0], [2.0], [2.0], [4.0], [3.5]], dtype=torch.float64)
    loss2 = episode_step(k_shot=2)(Identity(), images, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert loss2.item() == pytest.approx((math.log(2) + math.log1p(math.exp(-6))) / 2, rel=1e-9)


def test_episode_step_rejects_bad_k_shot() -> None:
    with pytest.raises((ValueError, TypeError)):
        episode_step(0)


# -------------------------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize("argv", [
    ["oneshot", "--epochs", "0"],
    ["oneshot", "--epochs", "two"],
    ["oneshot", "--seed", "-1"],
    ["oneshot", "--methods", "nearest_neighbour"],
    ["oneshot", "--shots", "5"],
])
def test_oneshot_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_oneshot_json_schema_on_a_tiny_run(tmp_path: Path) -> None:
    env = {**os.environ, "FEWSHOT_FAST": "1", "FEWSHOT_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "FEWSHOT_PROGRESS": "0", "FEWSHOT_CACHE_DIR": str(tmp_path / "cache"),
           "FEWSHOT_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "fewshot", "oneshot", "--json", "--epochs", "1",
                           "--methods", "protonet"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)  # stdout is JSON only; notes went to stderr
    assert "Characters: printed characters" in done.stderr
    assert [r["method"] for r in rows] == ["pixels", "protonet"]
    for row in rows:
        assert set(row) == set(ONESHOT_COLUMNS)
        assert row["data"] == "printed"
        assert row["metric"] in ("euclidean", "cosine")
        for key in ONESHOT_COLUMNS[3:-3]:
            assert isinstance(row[key], float) and 0.0 <= row[key] <= 1.0, (key, row[key])
        for part in ("validation", "test_by_metric"):  # both distances, {mean, ci95} each
            assert sorted(row[part]) == ["cosine", "euclidean"]
            assert all(0.0 <= v["mean"] <= 1.0 and v["ci95"] >= 0.0 for v in row[part].values())
        # the chosen distance is the better one on the validation characters
        chosen = row["validation"][row["metric"]]["mean"]
        assert chosen == max(v["mean"] for v in row["validation"].values())
        # the test row of the chosen distance is the table's 20-way 1-shot
        assert row["test_by_metric"][row["metric"]]["mean"] == row["fewshot_20way_1shot"]
        assert row["train_seconds"] >= 0.0
        # more ways are harder, more shots easier (for pixels, exactly; trained: nearly always)
        assert row["fewshot_20way_1shot"] < row["fewshot_5way_1shot"]
    assert rows[0]["train_seconds"] == 0.0
    assert rows[1]["train_seconds"] > 0.0
    typed = [CharacterResult(  # the rows back from their JSON
        r["method"], r["data"], r["metric"],
        {(n, k): Score(r[f"fewshot_{n}way_{k}shot"], r[f"fewshot_{n}way_{k}shot_ci95"])
         for n, k in ONESHOT_SETTINGS},
        *({m: Score(**v) for m, v in r[part].items()} for part in ("validation", "test_by_metric")),
        r["train_seconds"]) for r in rows]
    assert [flat(r) for r in typed] == rows
    table = oneshot_markdown(typed)
    assert table.splitlines()[0].startswith("| method | dist. | 5w1s | 5w5s | 20w1s | 20w5s |")
    assert "| protonet |" in table
    metrics = metric_markdown(typed)
    assert metrics.splitlines()[0].startswith("| method | val. Eucl. | val. cos.")


def test_validation_and_test_characters_are_disjoint_halves() -> None:
    labels = torch.arange(40).repeat_interleave(3)
    val, test = evaluation_halves(labels, seed=5)
    assert not set(val) & set(test) and sorted(val + test) == list(range(40))
    assert len(val) == len(test) == 20
    assert evaluation_halves(labels, seed=5) == (val, test)  # seeded
    # the same halves as chapter 9's calibration and test identities
    # (the protocol needs > 5 images per identity: 9 here, same identities, same halves)
    splits = verification_splits(labels.repeat_interleave(3), "characters", seed=5)
    assert evaluation_halves(labels.repeat_interleave(3), seed=5) == (val, test)
    assert set(splits["calibration"].identities()) <= set(val)
    assert set(splits["test"].identities()) <= set(test)


def test_character_methods_cover_the_chapter() -> None:
    methods = {spec["method"] for spec in CHARACTER_METHODS.values()}
    assert {"siamese", "triplet", "protonet", "supcon"} <= methods
    assert methods & {"arcface", "cosface"}
    # the alternatives the defaults were chosen against are trainable by name too
    assert not set(CHARACTER_ALTERNATIVES) & set(CHARACTER_METHODS)
    assert {spec["method"] for spec in CHARACTER_ALTERNATIVES.values()} <= methods


# -------------------------------------------------------------------------------------------
# The methods table says how each model trains


def quick_run(seed: int = 0) -> Run:
    return Run(torch.device("cpu"), PROFILES["quick"], seed, "")


def test_methods_table_shows_protonet_episodes_as_training_builds_them() -> None:
    run = quick_run()
    rows = {line.split(" | ")[0].strip("| "): line for line in methods_markdown(run).splitlines()}
    ep = recipes.PROTONET
    shape = f"{ep['n_way']}-way {ep['k_shot']}-shot, {ep['n_query']} queries"
    assert rows["protonet"] == f"| protonet | protonet | – | episodes | {shape} |"
    assert shape == "20-way 5-shot, 5 queries"  # what chapter 8's prose says
    # the other models keep their own sampler and settings
    assert rows["triplet"] == "| triplet | triplet | batch_hard | pk | margin soft, squared False |"
    assert rows["arcface"] == "| arcface | arcface | – | random | – |"
    # the table's episode is the one training builds (EpisodeBatches of recipes' sampler)
    spec = character_spec(run, "protonet")
    built = recipes._batch_sampler(spec, torch.arange(200).repeat_interleave(20)).sampler
    assert (built.n_way, built.k_shot, built.n_query) == (ep["n_way"], ep["k_shot"], ep["n_query"])


def test_extra_of_reads_a_changed_episode_from_the_spec() -> None:
    spec = character_spec(quick_run(), "protonet")
    assert sampler_of(spec) == "episodes" and spec.sampler == "random"
    assert extra_of(spec.replace(k_shot=1)) == "20-way 1-shot, 5 queries"
    assert extra_of(spec.replace(n_way=5, k_shot=1, shift=2.0)) == "5-way 1-shot, 5 queries, shift 2.0"
    supcon = character_spec(quick_run(), "supcon")
    assert sampler_of(supcon) == "pk" and extra_of(supcon) == "temperature 0.2, shift 2.0"


def test_a_new_protonet_episode_is_a_new_cache_key() -> None:
    # chapter 8's exercise 1: changing the episode through the spec retrains (a new key); editing
    # recipes.PROTONET at run time would not (the spec, and so the key, stay the same)
    spec = character_spec(quick_run(), "protonet")
    x, y = torch.zeros(6, 1, 28, 28), torch.tensor([0, 0, 1, 1, 2, 2])
    keys = {recipes.cache_key(s, x, y) for s in (spec, spec.replace(k_shot=1),
                                                 spec.replace(n_way=5, k_shot=1))}
    assert len(keys) == 3
