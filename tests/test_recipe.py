"""``--recipe``: the authors' recipe trains stage-1 rows with crop and flip only, evaluates
every epoch after the first milestone, is recorded in results.json, and a checkpoint of one
recipe never resumes a run of the other."""

import pytest
from conftest import fabricated_lt

from afr_aug.bench import presets, reproduce
from afr_aug.bench.checkpoints import restore, state_of
from afr_aug.bench.loop import new_run
from afr_aug.bench.methods import METHODS
from afr_aug.bench.schedule import Schedule


def test_recipe_flag_reaches_the_schedule():
    assert presets.schedule_from(reproduce.parse_args([])).recipe == "paper"
    args = reproduce.parse_args(["--recipe", "authors"])
    assert presets.schedule_from(args).recipe == "authors"
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--recipe", "mine"])


def test_authors_recipe_drops_autoaugment_and_cutout():
    data = fabricated_lt([20, 6])
    paper = new_run("ce", 0, Schedule(epochs=2), data, "cpu").augment
    authors = new_run("ldam_drw", 0, Schedule(epochs=2, recipe="authors"), data, "cpu").augment
    assert (paper.crop, paper.flip, paper.auto_augment, paper.cutout) == (True, True, True, True)
    assert (authors.crop, authors.flip, authors.auto_augment, authors.cutout) == (
        True,
        True,
        False,
        False,
    )
    with pytest.raises(ValueError, match="unknown recipe 'x'"):
        METHODS["ce"].recipe("x", Schedule())


def test_authors_recipe_evaluates_every_epoch_after_the_recipe_first_changes():
    paper, authors = Schedule(), Schedule(recipe="authors")
    assert [e for e in range(1, 201) if paper.evaluates(e, 1)] == list(range(10, 201, 10))
    dense = [e for e in range(1, 201) if authors.evaluates(e, 1)]
    assert dense == list(range(10, 161, 10)) + list(range(161, 201))
    assert [e for e in range(1, 51) if authors.evaluates(e, 2)] == list(range(10, 51, 10))
    # the first change of the recipe decides: IB's switch (and decay) at half-way, and a DRW
    # that starts before the first decay
    ib = Schedule(recipe="authors", milestones=(0.5, 0.8, 0.9), switch_from=0.5)
    assert [e for e in range(1, 201) if ib.evaluates(e, 1)] == list(range(10, 101, 10)) + list(
        range(101, 201)
    )
    assert Schedule(recipe="authors", drw_from=0.7).dense_from() == 0.7
    cosine = Schedule(recipe="authors", lr_schedule="cosine_warmup", milestones=(0.1,))
    assert cosine.dense_from() == 0.8  # milestones mean nothing to the cosine schedule


def test_a_checkpoint_of_another_recipe_is_refused():
    data = fabricated_lt([20, 6])
    state = state_of(new_run("ce", 0, Schedule(epochs=2, recipe="authors"), data, "cpu"))
    assert state["recipe"] == "authors"
    with pytest.raises(ValueError, match="trained with --recipe authors, not paper"):
        restore(new_run("ce", 0, Schedule(epochs=2), data, "cpu"), state)
    del state["recipe"]  # checkpoints from before recipes: "paper"
    restore(new_run("ce", 0, Schedule(epochs=2), data, "cpu"), state)
