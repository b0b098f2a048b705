"""fewshot.tables: typed rows and the columns to show in, one Markdown or text table out, and the
command line's JSON; fewshot.evaluate.Score, the one way a number with its spread is printed."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pytest
import torch

from fewshot.episodes import FewShotResult
from fewshot.evaluate import Score, leaders, order, seed_ci95, versus, with_binomial
from fewshot.tables import Column, flat, markdown, text, text_of, to_json


@dataclass
class Row:
    name: str
    accuracy: Score
    fewshot: dict = field(default_factory=dict)
    rates: dict = field(default_factory=dict)
    seconds: float | None = None
    model: object = field(default=None, metadata={"json": False})
    renamed: float = field(default=0.5, metadata={"key": "renamed_0.1"})


ROWS = [Row("pixels", Score(0.603, 0.011), {(5, 1): Score(0.6, 0.01)}, {0.01: 0.25}, 0.0),
        Row("triplet, P×K", Score(0.7123, 0.0091, 0.02, seeds=3), {(20, 5): Score(0.9, 0.02)}, {}, 12.6,
            model=torch.nn.Linear(2, 2))]
COLUMNS = [Column("method", "name"), Column("acc.", "accuracy", note="acc.: accuracy"),
           Column("s", "seconds", "{:.0f}", note="s: seconds"),
           Column("TAR", lambda r: r.rates.get(0.01), "{:.1%}")]


def test_score_prints_the_spread_the_book_shows() -> None:
    assert str(Score(0.603, 0.011)) == "60.3 ± 1.1%"
    # three seeds: the 95% CI of their mean, 4.303 · 0.02 / √3 = 5.0 points, wider than the episodes'
    assert str(Score(0.603, 0.011, 0.02, seeds=3)) == "60.3 ± 5.0%"
    assert str(Score(0.603, 0.011, 0.001, seeds=3)) == "60.3 ± 1.1%"  # the episodes' CI is wider
    assert str(Score(0.91234, percent=False)) == "0.912"
    assert str(Score(0.91234, std=0.0041, percent=False, seeds=3)) == "0.912 ± 0.010"
    assert seed_ci95(1.0, 2) == pytest.approx(12.706 / math.sqrt(2))
    assert seed_ci95(1.0, 40) == pytest.approx(1.96 / math.sqrt(40))
    with pytest.raises(ValueError, match="seeds=1"):
        seed_ci95(1.0, 1)
    assert str(Score(0.5)) == "50.0%"
    result = FewShotResult(0.5, 0.02, torch.zeros(3), 5, 1)
    assert Score.of(result) == Score(0.5, 0.02) and Score.of((0.5, 0.02)) == Score(0.5, 0.02)
    with pytest.raises(TypeError, match="expected a Score"):
        Score.of("50%")


def test_order_and_versus_take_scores_results_and_pairs() -> None:
    high, low = Score(0.6, 0.01), FewShotResult(0.5, 0.02, torch.zeros(3), 5, 1)
    assert order(high, low) == 1 and order(low, high) == -1 and order(high, (0.595, 0.02)) == 0
    nbsp = "\u00a0"  # a number and its interval stay on one line when a chapter wraps the sentence
    assert versus("A", high, "B", low) == f"A (60.0{nbsp}±{nbsp}1.0%) beats B (50.0{nbsp}±{nbsp}2.0%)"
    assert "no clear difference" in versus("A", high, "B", (0.595, 0.02))
    # over three seeds, small episode CIs but a wide spread between seeds: no winner
    a, b = Score(0.514, 0.008, 0.03, seeds=3), Score(0.485, 0.006, 0.02, seeds=3)
    assert order((a.mean, a.ci95), (b.mean, b.ci95)) == 1  # the episodes alone would name one
    assert order(a, b) == 0 and "no clear difference" in versus("A", a, "B", b)
    assert f"51.4{nbsp}±{nbsp}7.5%" in versus("A", a, "B", b)
    # a fraction (P@1, MAP@R) is compared as the tables show it, with three decimals
    p1, p2 = Score(0.951, 0.015, percent=False), Score(0.979, 0.007, percent=False)
    assert versus("A", p1, "B", p2) == f"A (0.951{nbsp}±{nbsp}0.015) is below B (0.979{nbsp}±{nbsp}0.007)"


def test_with_binomial_gives_a_proportion_its_interval_and_keeps_the_seeds() -> None:
    one = with_binomial(0.9, 1000)
    assert one.mean == 0.9 and not one.percent and one.ci95 == pytest.approx(1.96 * (0.09 / 1000) ** 0.5)
    seeds = with_binomial(Score(0.9, None, std=0.05, percent=False, seeds=3), 1000)
    assert seeds.seeds == 3 and seeds.interval == pytest.approx(seed_ci95(0.05, 3))  # the wider
    # four P@1s 2–6 test images apart out of 1,000: no clear winner
    assert len(leaders({m: with_binomial(p, 1000) for m, p in zip("abcd", (0.981, 0.979, 0.978, 0.975))})) == 4
    for bad in ((1.2, 10), (0.5, 0)):
        with pytest.raises(ValueError, match="proportion"):
            with_binomial(*bad)


def test_leaders_names_the_top_and_every_score_that_ties_with_it() -> None:
    scores = {"a": Score(0.60, 0.01), "b": (0.61, 0.01), "c": Score(0.50, 0.01),
              "d": FewShotResult(0.595, 0.02, torch.zeros(3), 5, 1)}
    assert leaders(scores) == ["b", "a", "d"]  # c is clearly below b: not a leader
    assert leaders({"a": (0.9, 0.01), "c": (0.5, 0.01)}) == ["a"]  # a clear winner
    # seeds widen the interval: a tie that episodes alone would call a win
    assert leaders({"a": Score(0.514, 0.008, 0.03, seeds=3), "b": Score(0.485, 0.006, 0.02, seeds=3)}) == ["a", "b"]
    with pytest.raises(ValueError, match="no scores"):
        leaders({})


def test_markdown_aligns_text_left_numbers_right_and_explains_the_heads() -> None:
    table = markdown(ROWS, COLUMNS, note="two rows", end="one seed")
    lines = table.splitlines()
    assert lines[0] == "| method | acc. | s | TAR |"
    assert lines[1] == "| --- | ---: | ---: | ---: |"
    assert lines[2] == "| pixels | 60.3\u00a0±\u00a01.1% | 0 | 25.0% |"
    assert lines[3] == "| triplet, P×K | 71.2\u00a0±\u00a05.0% | 13 | – |"  # no TAR: "–"
    assert lines[-1] == "*two rows; acc.: accuracy; s: seconds; one seed*"


def test_a_column_of_missing_numbers_stays_right_aligned() -> None:
    table = markdown(ROWS, [Column("method", "name"), Column("none", lambda r: None)])
    assert table.splitlines()[1] == "| --- | ---: |" and table.splitlines()[2] == "| pixels | – |"


def test_text_table_for_the_command_line() -> None:
    lines = text(ROWS, COLUMNS).splitlines()
    assert lines[0].split() == ["method", "acc.", "s", "TAR"]
    assert set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    assert lines[2].startswith("pixels        ") and lines[2].endswith("25.0%")
    assert "60.3 ± 1.1%" in lines[2]  # plain spaces outside Markdown
    assert lines[-1] == "(acc.: accuracy; s: seconds)"


def test_bad_columns_and_rows_are_named() -> None:
    with pytest.raises(ValueError, match="'speed'"):
        markdown(ROWS, [Column("speed", "speed")])
    with pytest.raises(TypeError, match="tables.Column"):
        markdown(ROWS, ["method"])
    with pytest.raises(TypeError, match="list of rows"):
        text("pixels", COLUMNS)
    assert text_of(None) == "–" and text_of(3) == "3" and text_of(0.5, "{:.0%}") == "50%"


def test_rows_may_be_tuples_read_by_index() -> None:
    table = markdown([("pairs", 1_234_567)], [Column("what", 0), Column("how many", 1, "{:,}")])
    assert table.splitlines() == ["| what | how many |", "| --- | ---: |", "| pairs | 1,234,567 |"]


def test_flat_json_keeps_the_command_lines_keys() -> None:
    first = flat(ROWS[0])
    assert first == {"name": "pixels", "accuracy": 0.603, "accuracy_ci95": 0.011,
                     "fewshot_5way_1shot": 0.6, "fewshot_5way_1shot_ci95": 0.01,
                     "rates": {"0.01": 0.25}, "seconds": 0.0, "renamed_0.1": 0.5}
    second = json.loads(to_json(ROWS))[1]
    assert second["accuracy_std"] == 0.02 and "model" not in second  # no models in the JSON
    assert second["fewshot_20way_5shot"] == 0.9
    nested = flat(Row("a", Score(0.1), rates={"cosine": Score(0.4, 0.01)}))
    assert nested["rates"] == {"cosine": {"mean": 0.4, "ci95": 0.01}}
    with pytest.raises(TypeError, match="result dataclass"):
        flat({"name": "pixels"})
