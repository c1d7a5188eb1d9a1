"""Tests for refine3d_jax.stopping: signals collected, not fatal; non-finite losses named.
(The whole story, a run stopped by SIGTERM and resumed, is in train_test.)"""

import signal

import ml_collections
import numpy as np
import pytest

from refine3d_jax import errors, jtso, stopping


def test_signals_are_collected_and_the_handlers_restored():
  before = signal.getsignal(signal.SIGTERM)
  with stopping.stop_requests() as received:
    signal.raise_signal(signal.SIGTERM)
    signal.raise_signal(signal.SIGINT)
    assert received == [signal.SIGTERM, signal.SIGINT]
  assert signal.getsignal(signal.SIGTERM) is before
  config = ml_collections.ConfigDict({'train': {'log_every_steps': 10}})
  assert stopping.agreed_stop(received, 3, config)  # one process: at once
  assert not stopping.agreed_stop([], 3, config)
  error = errors.Interrupted(signal.SIGTERM, 7)
  assert (error.signum, error.step) == (signal.SIGTERM, 7)
  assert str(error) == 'stopped by SIGTERM after step 7; rerun the same command to resume'


class FakeCheckpoints:
  waited = False

  def wait(self):
    self.waited = True

  def latest_step(self):
    return 4


def test_a_non_finite_metric_names_the_step_stage_and_last_good_checkpoint():
  checkpoints, stage = FakeCheckpoints(), jtso.STAGES['att']
  scalars = stopping.finite_scalars(
    {'loss_multi': np.float32(0.5)}, 6, stage, checkpoints, 'runs/x'
  )
  assert scalars == {'loss_multi': 0.5} and not checkpoints.waited
  with pytest.raises(
    FloatingPointError,
    match=r'non-finite loss at step 6 \(stage 2, att\).*'
    'the last good checkpoint is step 4 in runs/x',
  ):
    stopping.finite_scalars({'loss_multi': np.float32(np.nan)}, 6, stage, checkpoints, 'runs/x')
  assert checkpoints.waited  # the save in flight finished first
