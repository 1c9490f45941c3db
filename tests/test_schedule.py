"""The reference loop's schedule matches the CMO code's (warm-up per epoch, CMO from epoch 4)."""

import pytest
from conftest import fabricated_lt

from afr_aug.bench.loop import new_run, start_epoch
from afr_aug.bench.schedule import Schedule


def test_warm_up_steps_once_per_epoch_like_the_reference():
    s = Schedule(epochs=200)
    # CMO code: lr * (epoch + 1) / 5 during the first 5 epochs, whatever the step
    assert [s.lr_at(e, 0, 97, 1) for e in range(6)] == pytest.approx(
        [0.02, 0.04, 0.06, 0.08, 0.1, 0.1]
    )
    assert s.lr_at(2, 96, 97, 1) == pytest.approx(0.06)
    assert s.lr_at(160, 0, 97, 1) == pytest.approx(0.001) and s.lr_at(159, 0, 97, 1) == 0.1
    assert s.lr_at(180, 0, 97, 1) == pytest.approx(0.00001)
    smooth = Schedule(epochs=200, warmup_per="iteration")
    assert smooth.lr_at(0, 0, 10, 1) == pytest.approx(0.1 / 50)
    assert smooth.lr_at(4, 9, 10, 1) == pytest.approx(0.1)


def test_cmo_mixes_only_while_3_lt_epoch_lt_epochs_minus_3():
    run = new_run("bs_cmo", 0, Schedule(epochs=200), fabricated_lt([20, 6]), "cpu")
    on = []
    for e in range(200):
        run.epoch = e
        on.append(start_epoch(run).mixing)  # the run's loader, pointed at epoch e
    assert on.index(True) == 4 and len(on) - 1 - on[::-1].index(True) == 196
    assert sum(on) == 193
