"""Tests for refine3d_jax.eval_loop's pure parts; the loop itself runs in train_test
(validation) and evaluate_test (the evaluate command, one pass against one per count)."""

from configs import jtso
from refine3d_jax import eval_loop


def test_view_passes_nest_under_first_n_only():
  config = jtso.get_config('tiny')
  config.data.eval_views = 'first_n'
  assert eval_loop.view_passes(config, (1, 3, 2)) == [(3, (1, 3, 2))]
  config.data.eval_views = 'random'
  assert eval_loop.view_passes(config, (1, 3)) == [(1, (1,)), (3, (3,))]


def test_validation_thresholds_start_with_eval_threshold():
  config = jtso.get_config('tiny')
  thresholds = eval_loop.validation_thresholds(config)
  assert thresholds[0] == config.eval.threshold
  assert sorted(thresholds) == sorted(config.eval.thresholds)
