"""Tests of refine3d_jax.metrics against a per-sample Python reference."""

import json

import jax
import numpy as np
import pytest
from scipy import ndimage

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
  np.testing.assert_allclose(
    got[:, 0], [reference_iou(p, g, 0.3) for p, g in zip(probs, target)], rtol=1e-6
  )


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


def cube(shift=0, side=10, size=32, corner=11):
  """A `side`^3 cube of occupied voxels in a `size`^3 grid, moved by `shift` voxels along x."""
  grid = np.zeros((size,) * 3, bool)
  lo = corner + shift
  grid[lo : lo + side, corner : corner + side, corner : corner + side] = True
  return grid


def test_fscore_of_identical_shapes_is_one():
  # Both surfaces are sampled with one seed, so identical grids give identical points.
  blob = ndimage.gaussian_filter(np.random.default_rng(0).random((16,) * 3), 2) > 0.5
  assert 0 < blob.sum() < blob.size
  assert metrics.fscore(blob, blob) == 1.0
  assert metrics.fscore(cube(), cube()) == 1.0


def test_fscore_falls_as_a_cube_shifts():
  """A 10^3 cube against itself moved by 0, 1, 2 voxels along x.

  Hand derivation for the 1-voxel shift (voxel units: d = 1% of 32 = 0.32). Marching cubes
  on a binary grid bevels the cube: each face is a flat 9 x 9 square, each of the 12 edges a
  45-degree strip 9 long and sqrt(0.5) wide, each of the 8 corners a triangle of area
  sqrt(3)/8, so the area is 6*81 + 12*9*sqrt(.5) + sqrt(3) = 564.1 (the mesh's own sum).
  Area of the moved cube P within d of the target's surface T:
    4 side faces: 8 x 9 coincide with T's, plus a band 9 long beyond T's bevel, whose
      distance to the bevel is s / sqrt(2) at s past its start: 9 * d*sqrt(2) = 4.07;
      4 * 76.07 = 304.3;
    4 bevels along x: 8 x sqrt(.5) coincide, plus ~d*sqrt(3) * sqrt(.5) = 0.39 beyond
      (distance to T's corner triangle is s / sqrt(3)): 4 * 6.05 = 24.2;
    4 bevels of P's -x face (inside T, ending on T's side faces; distance 0.5 (1 - u) at
      fraction u of the width): the 0.64 nearest T, 0.64 * sqrt(.5) * 9 = 4.07; 4 * 4.07
      = 16.3; and 99% of the 4 corner triangles next to them: 0.86;
    the +x face, its bevels and corners, and P's -x face itself are >= 0.5 from T: 0.
  Precision = 345.6 / 564.1 = 0.613 on the surfaces; recall is equal by symmetry (mirroring
  x swaps P and T), so F = 0.613 (measured 0.6138 with 65536 points).
  Sampling with 8192 points (density rho = 8192 / 564.1 = 14.5 per voxel^2) loses:
  points on coinciding surface with no target point within d, exp(-rho pi d^2) = 0.9% of
  310.6 = 2.9; and at each band's outer edge, a band width of int_0^d exp(-rho pi (d^2 -
  h^2)) dh = 1 / (2 rho pi d) = 0.034 in distance, 0.049 on the surface, along 72 of edge =
  3.5: 6.4 / 564.1 = 0.011, so F = 0.602. Tolerance 0.015, about 3 standard deviations of
  the sampling noise (sqrt(0.6 * 0.4 / 8192) = 0.0054 for each of P and R).
  """
  f = [metrics.fscore(cube(shift), cube()) for shift in (0, 1, 2)]
  assert f[0] == 1.0 and f[0] > f[1] > f[2] > 0.4, f
  assert abs(f[1] - 0.602) < 0.015, f
  assert abs(metrics.fscore(cube(1), cube(), num_points=65536) - 0.613) < 0.006


def test_fscore_edge_cases():
  empty = np.zeros((8, 8, 8), bool)
  one = empty.copy()
  one[2, 3, 4] = True
  far = empty.copy()
  far[7, 7, 7] = True
  assert metrics.fscore(empty, empty) == 1.0
  assert metrics.fscore(one, empty) == 0.0
  assert metrics.fscore(empty, one) == 0.0
  assert metrics.fscore(one, far) == 0.0  # precision = recall = 0
  # distance is a fraction of the side: the two voxels' points are 0.80 to 0.88 sides apart
  assert metrics.fscore(one, far, distance=0.9) == 1.0
  with pytest.raises(ValueError, match='one S'):
    metrics.fscore(empty, np.zeros((8, 8, 9), bool))


def test_fscores_thresholds_each_sample():
  targets = np.stack([cube(size=16, side=6, corner=5)] * 3)
  preds = np.stack(
    [
      cube(size=16, side=6, corner=5) * 0.3,  # occupied at t = 0.3 only
      cube(1, size=16, side=6, corner=5) * 0.9,
      np.zeros((16,) * 3),
    ]
  )
  got = metrics.fscores(preds, targets, 0.3, num_points=1024)
  assert got.shape == (3,) and got.dtype == np.float64
  np.testing.assert_array_equal(
    got, [1.0, metrics.fscore(preds[1] > 0, targets[1], num_points=1024), 0.0]
  )
  np.testing.assert_array_equal(metrics.fscores(preds[:1], targets[:1], 0.4), [0.0])


def test_summarize_unbalanced_classes():
  values = np.array([1.0, 1.0, 1.0, 0.0])
  labels = np.array([0, 0, 0, 2])
  got = metrics.summarize(values, labels, ['aeroplane', 'bench', 'cabinet'])
  assert got == {
    'sample_weighted': 0.75,
    'class_mean': 0.5,
    'per_category': {'aeroplane': 1.0, 'cabinet': 0.0},
    'count': {'aeroplane': 3, 'cabinet': 1},
  }
  json.dumps(got)  # plain python types
  # per-threshold values [N, T]
  got = metrics.summarize(
    np.array([[1.0, 0.5], [0.5, 0.5], [0.0, 1.0]]), np.array([1, 1, 0]), ['a', 'b']
  )
  np.testing.assert_allclose(got['sample_weighted'], [0.5, 2 / 3])
  np.testing.assert_allclose(got['class_mean'], [0.375, 0.75])
  np.testing.assert_allclose(got['per_category']['b'], [0.75, 0.5])
  assert got['count'] == {'a': 1, 'b': 2} and isinstance(got['class_mean'], list)
  json.dumps(got)
  with pytest.raises(ValueError, match='labels must'):
    metrics.summarize(values, labels[:3], ['a', 'b', 'c'])
  with pytest.raises(ValueError, match='labels must index'):
    metrics.summarize(values, labels, ['a', 'b'])


def test_best_of():
  assert metrics.best_of([0.60, 0.65, 0.66, 0.66, 0.61]) == (0.66, 0.3)
  assert metrics.best_of([0.1, 0.2], (0.5, 0.25)) == (0.2, 0.25)
  with pytest.raises(ValueError, match='one value per threshold'):
    metrics.best_of([0.1, 0.2])


def test_fscore_many_is_fscore_of_each():
  """One target, several predictions (what evaluation scores per object): the same numbers
  as separate calls, empty predictions included."""
  target = cube(size=16, side=6, corner=5)
  preds = [
    cube(1, size=16, side=6, corner=5),
    np.zeros((16,) * 3, bool),
    target,
    cube(2, size=16, side=5, corner=4),
  ]
  got = metrics.fscore_many(preds, target, num_points=2048)
  assert got == [metrics.fscore(p, target, num_points=2048) for p in preds]
  # against an unbounded nearest-neighbour search (what the bounded query replaces)
  from scipy import spatial  # pylint: disable=g-import-not-at-top

  t = metrics._sample_surface(*metrics.surface(target), 2048, 0)  # pylint: disable=protected-access
  p = metrics._sample_surface(*metrics.surface(preds[0]), 2048, 0)  # pylint: disable=protected-access
  precision = np.mean(spatial.cKDTree(t).query(p)[0] < 0.01)
  recall = np.mean(spatial.cKDTree(p).query(t)[0] < 0.01)
  assert got[0] == 2 * precision * recall / (precision + recall)
  assert got[1] == 0.0 and got[2] == 1.0 and 0 < got[0] < 1
  with pytest.raises(ValueError, match='one S'):
    metrics.fscore_many([np.zeros((16, 16, 15), bool)], target)
