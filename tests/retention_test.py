"""Tests for refine3d_jax.retention: which checkpoints are kept, and which one is best."""

from etils import epath
import numpy as np
import orbax.checkpoint as ocp

from refine3d_jax import retention


def test_metric_value_is_a_finite_float_or_none():
  assert retention.metric_value({'val_iou': np.float32(0.5)}, 'val_iou') == 0.5
  for metrics in (None, {}, {'val_iou': 'x'}, {'val_iou': float('nan')}, {'val_iou': float('inf')}):
    assert retention.metric_value(metrics, 'val_iou') is None


def test_best_index_skips_missing_values_and_keeps_the_first_on_ties():
  assert retention.best_index([None, {'val_iou': 'x'}, {'val_iou': 1}], 'val_iou') == 2
  assert retention.best_index([{'val_iou': 0.5}, {}, {'val_iou': 0.5}], 'val_iou') == 0
  assert retention.best_index([None, {'stage': 'base'}], 'val_iou') is None


def test_manager_keeps_the_last_k_and_the_best(tmp_path):
  manager = retention.manager(epath.Path(tmp_path), keep=2, best_metric='val_iou')
  for step, iou in enumerate([0.1, 0.9, 0.2, 0.3, 0.4], start=1):
    manager.save(
      step,
      args=ocp.args.Composite(step=ocp.args.JsonSave({'step': step})),
      metrics={'val_iou': iou},
    )
  manager.wait_until_finished()
  assert sorted(manager.all_steps()) == [2, 4, 5]
  manager.close()
  reader = retention.manager(epath.Path(tmp_path), keep=None, best_metric=None, read_only=True)
  assert sorted(reader.all_steps()) == [2, 4, 5]
  reader.close()
