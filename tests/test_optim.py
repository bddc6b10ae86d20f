"""Weight EMA (train.ema_decay): warmed up, so a short schedule does not keep its start."""

import jax.numpy as jnp
import numpy as np
import pytest

from multimodal.training.optim import ema_decay_at, param_ema


def test_ema_warms_up_instead_of_keeping_the_initial_weights():
    tx = param_ema(0.998)
    params = {"w": jnp.zeros(3)}
    state = tx.init(params)
    step = {"w": jnp.ones(3)}  # every update moves the weights to 1 and keeps them there
    _, state = tx.update(step, state, params)
    # first update: decay 1/10, so the average is 90% the new weights (not 0.2%)
    np.testing.assert_allclose(state.ema["w"], 0.9, rtol=1e-6)
    params = {"w": jnp.ones(3)}
    for _ in range(300):
        _, state = tx.update({"w": jnp.zeros(3)}, state, params)
    assert int(state.count) == 301
    assert float(state.ema["w"][0]) > 0.999  # the start is forgotten within the schedule


@pytest.mark.parametrize("count,expected", [(0, 0.1), (90, 0.91), (10**6, 0.998)])
def test_decay_schedule(count, expected):
    assert float(ema_decay_at(0.998, count)) == pytest.approx(expected, abs=1e-3)
