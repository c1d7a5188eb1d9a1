"""Tests of refine3d_jax.visualize: shapes, determinism, sensitivity, atomic PNG."""

import os

import numpy as np
import pytest
from PIL import Image

from refine3d_jax import visualize


def volumes(n=4, seed=0):
  g = np.mgrid[:32, :32, :32]
  sphere = ((g - 15.5) ** 2).sum(0) < 12**2
  slab = g[1] < 8
  tower = (np.abs(g[0] - 16) < 4) & (np.abs(g[2] - 16) < 4)
  target = np.stack([sphere, slab, tower, np.zeros_like(sphere)][:n])
  rng = np.random.default_rng(seed)
  probs = np.clip(target + rng.normal(0, 0.2, target.shape), 0, 1).astype(np.float32)
  views = rng.random((n, 3, 16, 16, 3)).astype(np.float32)
  return views, probs, target


def test_shape_dtype_and_determinism():
  views, probs, target = volumes()
  a = visualize.reconstruction_grid(views, probs, target)
  b = visualize.reconstruction_grid(views, probs, target)
  row = visualize.HEADER + visualize.PANEL
  assert a.shape == (4 * row, 3 * visualize.PANEL, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, b)
  # uint8 views work too
  u8 = (np.arange(16 * 16 * 3) % 256).astype(np.uint8).reshape(1, 1, 16, 16, 3)
  assert visualize.reconstruction_grid(u8, probs[:1], target[:1]).shape == (row, 384, 3)


def test_different_volumes_give_different_pictures():
  views, probs, target = volumes()
  sphere, slab, tower, empty = (visualize.render_voxels(t) for t in target)
  assert not np.array_equal(sphere, slab) and not np.array_equal(slab, tower)
  assert (empty == visualize.BACKGROUND).all() and not (sphere == visualize.BACKGROUND).all()
  # the top of the scene is up: a slab at the bottom (axis 1 small) is drawn low
  rows = np.nonzero((slab != visualize.BACKGROUND).any(axis=(1, 2)))[0]
  tall = np.nonzero((tower != visualize.BACKGROUND).any(axis=(1, 2)))[0]
  assert rows.min() > tall.min()
  grid = visualize.reconstruction_grid(views, probs, target)
  other = visualize.reconstruction_grid(views, probs[::-1], target)
  assert not np.array_equal(grid, other)
  # the threshold changes the prediction picture
  assert not np.array_equal(grid, visualize.reconstruction_grid(views, probs, target, 0.6))


def test_azimuth_shows_the_other_side():
  """Seen from azimuth 220, a volume looks as it does from the default 40 when turned 180
  degrees about the up axis (axes 0 and 2 reversed): the hidden faces are drawn."""
  g = np.mgrid[:32, :32, :32]
  corner = ((g[0] < 8) | (g[2] < 8)) & (g[1] < 20)
  noise = np.random.default_rng(0).random((32, 32, 32)) < 0.2
  for volume in (corner, noise):
    back = visualize.render_voxels(volume, azimuth=220)
    np.testing.assert_array_equal(back, visualize.render_voxels(volume[::-1, :, ::-1]))
    assert not np.array_equal(back, visualize.render_voxels(volume))


def test_bad_shapes():
  views, probs, target = volumes()
  with pytest.raises(ValueError, match='need views'):
    visualize.reconstruction_grid(views[0], probs, target)
  with pytest.raises(ValueError, match='need views'):
    visualize.reconstruction_grid(views, probs, target[:2])


def test_save_png(tmp_path):
  image = visualize.reconstruction_grid(*volumes(2))
  path = str(tmp_path / 'sub' / 'grid.png')
  visualize.save_png(path, image)
  np.testing.assert_array_equal(np.asarray(Image.open(path).convert('RGB')), image)
  assert os.listdir(tmp_path / 'sub') == ['grid.png']  # no temp file left
  with pytest.raises(ValueError, match='uint8'):
    visualize.save_png(path, image.astype(np.float32))
