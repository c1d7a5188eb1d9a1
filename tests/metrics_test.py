"""Tests of refine3d_jax.metrics against a per-sample Python reference."""

import jax
import numpy as np
import pytest

from refine3d_jax import metrics


def reference_iou(p, gt, t):
  """The benchmark's formula, one sample at a time, in float64."""
  pred = (p >= t).astype(np.float64)
  inter = np.sum(pred * gt)
  union = np.sum((pred + gt) >= 1)
  return 1.0 if union == 0 else inter / union


def test_iou_matches_reference_on_random_volumes():
  rng = np.random.default_rng(0)
  probs = rng.random((5, 32, 32, 32), dtype=np.float32)
  target = rng.random((5, 32, 32, 32)) < np.linspace(0.05, 0.6, 5)[:, None, None, None]
  thresholds = metrics.DEFAULT_THRESHOLDS
  assert thresholds == (0.2, 0.25, 0.3, 0.4, 0.5)
  got = np.asarray(metrics.iou(probs, target, thresholds))
  assert got.shape == (5, 5) and got.dtype == np.float32
  want = [[reference_iou(p, g, t) for t in thresholds] for p, g in zip(probs, target)]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


def test_iou_under_jit_and_default_threshold():
  rng = np.random.default_rng(1)
  probs = rng.random((3, 8, 8, 8), dtype=np.float32)
  target = rng.random((3, 8, 8, 8)) < 0.3
  got = jax.jit(metrics.iou)(probs, target)
  assert got.shape == (3, 1)
  np.testing.assert_allclose(got[:, 0], [reference_iou(p, g, 0.3) for p, g in zip(probs, target)],
                             rtol=1e-6)


def test_iou_edge_cases():
  zeros = np.zeros((1, 32, 32, 32), np.float32)
  empty = np.zeros((1, 32, 32, 32), bool)
  full = np.ones((1, 32, 32, 32), bool)
  # empty prediction of an empty object: union 0, perfect by convention
  np.testing.assert_array_equal(metrics.iou(zeros, empty, (0.3, 0.5)), [[1.0, 1.0]])
  # empty prediction of a non-empty object
  np.testing.assert_array_equal(metrics.iou(zeros, full), [[0.0]])
  # all occupied, predicted all occupied; and a prediction of a single voxel
  np.testing.assert_array_equal(metrics.iou(np.ones_like(zeros), full), [[1.0]])
  one = zeros.copy()
  one[0, 3, 4, 5] = 0.9
  np.testing.assert_allclose(metrics.iou(one, full), [[1 / 32768]], rtol=1e-6)
  # full prediction of an empty object
  np.testing.assert_array_equal(metrics.iou(np.ones_like(zeros), empty), [[0.0]])
  # p exactly at the threshold counts as occupied
  np.testing.assert_array_equal(metrics.iou(np.full_like(zeros, 0.3), full, (0.3,)), [[1.0]])


def test_iou_shape_mismatch():
  with pytest.raises(ValueError, match='one shape'):
    metrics.iou(np.zeros((2, 4, 4, 4)), np.zeros((2, 4, 4, 5), bool))


def test_weighted_mean():
  values = np.array([[1.0, 2.0], [3.0, 4.0], [np.nan, 100.0]], np.float32)
  valid = np.array([True, True, False])
  np.testing.assert_allclose(metrics.weighted_mean(values, valid), [2.0, 3.0])
  np.testing.assert_allclose(jax.jit(metrics.weighted_mean)(values[:, 0], valid), 2.0)
  np.testing.assert_array_equal(metrics.weighted_mean(values, np.zeros(3, bool)), [0.0, 0.0])
  with pytest.raises(ValueError, match='valid must be'):
    metrics.weighted_mean(values, valid[:2])
