"""Tests of the synthetic dataset: build, determinism, voxels, camera, silhouettes."""

import glob
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from refine3d_jax.data import features
from refine3d_jax.data.synthetic_shapes import SyntheticShapes
from refine3d_jax.data import camera as camera_lib
from refine3d_jax.data.synthetic_shapes import generate
from refine3d_jax.data.synthetic_shapes import shapes

REAL = '/work/shared/shapenet_r2n2_sample/paired'


def _build(data_dir, config='small'):
  SyntheticShapes(config=config, data_dir=str(data_dir)).download_and_prepare()
  return tfds.builder_from_directory(str(data_dir / 'synthetic_shapes' / config / '1.0.0'))


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  return _build(tmp_path_factory.mktemp('a'))


def test_builds_readable_without_our_package(built):
  assert built.info.file_format.value == 'array_record'
  assert {k: v.num_examples for k, v in built.info.splits.items()} == {
      'train': 24, 'validation': 8, 'test': 8}
  ex = built.as_data_source(split='train')[0]
  assert len(ex['images']) == features.NUM_VIEWS
  assert ex['images'][0].shape == (137, 137, 4) and ex['images'][0].dtype == np.uint8
  assert ex['camera'].shape == (24, 5) and ex['voxels'].shape == (32, 32, 32)
  assert built.info.features['label'].names == list(shapes.CATEGORY_NAMES)
  assert ex['synset'].decode() == shapes.CATEGORY_NAMES[ex['label']]


def test_build_deterministic(built, tmp_path):
  again = _build(tmp_path)
  for split in ('train', 'test'):
    a, b = built.as_data_source(split=split), again.as_data_source(split=split)
    for i in range(len(a)):
      assert a[i]['model_id'] == b[i]['model_id']
      np.testing.assert_array_equal(a[i]['voxels'], b[i]['voxels'])
      np.testing.assert_array_equal(np.stack(a[i]['images']), np.stack(b[i]['images']))


def test_objects_independent_of_order_and_seeded():
  _, a = generate.make_example(0, 'train', 7)
  generate.make_example(0, 'train', 3)
  _, b = generate.make_example(0, 'train', 7)
  assert a['images'] == b['images']
  _, c = generate.make_example(1, 'train', 7)
  _, d = generate.make_example(0, 'test', 7)
  assert not np.array_equal(a['voxels'], c['voxels'])
  assert not np.array_equal(a['voxels'], d['voxels'])
  assert a['label'] == c['label'] == d['label']


@pytest.mark.parametrize('index', range(5))
def test_voxels_fit_grid_and_up_is_axis_1(index):
  obj = generate.make_object(0, 'validation', index)
  v = obj['voxels']
  assert v.dtype == bool and v.shape == (32, 32, 32)
  assert 50 < v.sum() < 32 ** 3 / 2
  # Normalised like ShapeNetVox32: the longest side spans the grid, the object is centred.
  extents = [np.flatnonzero(v.any(tuple(a for a in range(3) if a != ax)))
             for ax in range(3)]
  spans = [e[-1] - e[0] + 1 for e in extents]
  assert max(spans) >= 31
  for e in extents:
    assert abs((e[0] + e[-1]) / 2 - 15.5) <= 1.0
  if generate.category_of(index) == 'table':  # the top is the fullest layer, high on axis 1
    layers = v.sum((0, 2))
    lo, hi = extents[1][0], extents[1][-1]
    assert np.argmax(layers) >= (lo + hi) / 2 and layers[lo] < layers.max() / 2


def test_camera_ranges():
  cams = np.stack([generate.make_object(0, 'train', i)['camera'] for i in range(3)])
  assert cams.dtype == np.float32
  assert np.all((cams[..., 0] >= 0) & (cams[..., 0] < 360))
  assert np.all((cams[..., 1] >= 25) & (cams[..., 1] <= 30))
  assert np.all(cams[..., 2] == 0)
  assert np.all((cams[..., 3] >= 0.65) & (cams[..., 3] <= 0.95))
  assert np.all(cams[..., 4] == 25)
  assert cams[..., 0].std() > 50


def _iou(a, b):
  return (a & b).sum((-1, -2)) / (a | b).sum((-1, -2))


@pytest.mark.parametrize('index', range(5))  # one object per category
def test_voxel_silhouettes_match_alpha(index):
  obj = generate.make_object(3, 'train', index)
  sil = camera_lib.voxel_silhouettes(obj['voxels'], obj['side'], obj['camera'])
  alpha = obj['images'][..., 3] > 0
  assert np.all(alpha.any((1, 2)))
  assert not np.any(alpha[:, 0]) and not np.any(alpha[:, :, 0])  # object inside the frame
  assert np.all(_iou(sil, alpha) >= 0.7), (obj['label'], _iou(sil, alpha))
  assert np.mean(_iou(sil, alpha)) >= 0.8


def test_silhouette_is_view_specific():
  """The check above can fail: a wrong view's camera gives a poor match."""
  obj = generate.make_object(3, 'train', 0)
  cam = obj['camera'].copy()
  cam[:, 0] = (cam[:, 0] + 90) % 360
  sil = camera_lib.voxel_silhouettes(obj['voxels'], obj['side'], cam)
  assert np.mean(_iou(sil, obj['images'][..., 3] > 0)) < 0.7


def _read_binvox(path):
  with open(path, 'rb') as f:
    while f.readline().strip() != b'data':
      pass
    raw = np.frombuffer(f.read(), np.uint8)
  return np.repeat(raw[0::2], raw[1::2]).astype(bool).reshape(32, 32, 32).transpose(0, 2, 1)


@pytest.mark.skipif(not os.path.isdir(REAL), reason='no real R2N2 sample')
def test_camera_model_matches_real_r2n2():
  """Our camera, applied to real voxels and metadata, reproduces the real alpha masks."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  vox = sorted(glob.glob(f'{REAL}/ShapeNetVox32/*/*/model.binvox'))[:2]
  assert vox
  for path in vox:
    render_dir = os.path.dirname(path).replace('ShapeNetVox32', 'ShapeNetRendering') + '/rendering'
    meta = np.loadtxt(f'{render_dir}/rendering_metadata.txt', dtype=np.float32)[:6]
    with open(path, 'rb') as f:
      side = float(next(l for l in f if l.startswith(b'scale')).split()[1])
    sil = camera_lib.voxel_silhouettes(_read_binvox(path), side, meta)
    alpha = np.stack([np.array(Image.open(f'{render_dir}/{k:02d}.png'))[..., 3] > 0
                      for k in range(6)])
    assert np.mean(_iou(sil, alpha)) >= 0.8
