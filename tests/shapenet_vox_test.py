"""Tests of the shapenet_vox builder: voxel grids rendered as smooth shaded objects."""

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from refine3d_jax.data import binvox
from refine3d_jax.data import build
from refine3d_jax.data import camera as camera_lib
from refine3d_jax.data import features
from refine3d_jax.data import shading
from refine3d_jax.data.shapenet_vox import builder
from refine3d_jax.data.shapenet_vox import render
from refine3d_jax.data.synthetic_shapes import generate
from refine3d_jax.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAIRS = os.path.join(ROOT, '..', 'shared', 'shapenet_chairs_vox32')
needs_chairs = pytest.mark.skipif(
  not os.path.isdir(CHAIRS), reason=f'real ShapeNet chair grids not found at {CHAIRS}'
)
CHAIR = '03001627'


def _grids(n):
  """n object grids [32]^3 with no ShapeNet needed: the synthetic set's voxels."""
  return [generate.make_object(0, 'test', i)['voxels'] for i in range(n)]


def _manual_dir(root, grids, synset=CHAIR):
  for i, grid in enumerate(grids):
    folder = root / 'ShapeNetVox32' / synset / f'model{i:02d}'
    folder.mkdir(parents=True)
    binvox.write_binvox(folder / 'model.binvox', grid)
  return root


def _split_file(path, synset, train, val, test):
  path.write_text(
    json.dumps(
      [{'taxonomy_id': synset, 'taxonomy_name': 'x', 'train': train, 'val': val, 'test': test}]
    )
  )
  return path


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp('vox')
  manual = _manual_dir(root / 'manual', _grids(5))
  split = _split_file(
    root / 's.json', CHAIR, ['model00', 'model01', 'model02'], ['model03'], ['model04', 'not_there']
  )
  summary = build.build('shapenet_vox', str(root / 'tfds'), None, str(manual), str(split))
  return summary, tfds.builder_from_directory(summary['path'])


def test_builds_from_voxels_alone(built):
  summary, b = built
  assert summary['splits'] == {'train': 3, 'validation': 1, 'test': 1}
  assert summary['skipped']['test'] == {'not_in_manual_dir': 1}
  assert b.info.file_format.value == 'array_record'
  ex = b.as_data_source('train')[1]
  assert len(ex['images']) == features.NUM_VIEWS
  assert ex['images'][0].shape == (137, 137, 4) and ex['camera'].shape == (24, 5)
  assert b.info.features['label'].names[ex['label']] == 'chair'
  assert ex['synset'].decode() == CHAIR and ex['model_id'].decode() == 'model01'
  np.testing.assert_array_equal(ex['voxels'], _grids(2)[1])
  alpha = np.stack(ex['images'])[..., 3]
  assert set(np.unique(alpha)) == {0, 255}  # R2N2: transparent background
  assert alpha[:, 0].max() == 0 and alpha[:, :, 0].max() == 0  # object inside the frame


def test_objects_are_deterministic_and_independent_of_order(tmp_path):
  manual = str(_manual_dir(tmp_path, _grids(2)))
  a = builder.make_object(manual, CHAIR, 'model01', seed=0)
  builder.make_object(manual, CHAIR, 'model00', seed=0)
  again = builder.make_object(manual, CHAIR, 'model01', seed=0)
  np.testing.assert_array_equal(a['images'], again['images'])
  other_seed = builder.make_object(manual, CHAIR, 'model01', seed=1)
  assert not np.array_equal(a['images'], other_seed['images'])


def _iou(a, b):
  return (a & b).sum((-1, -2)) / (a | b).sum((-1, -2))


@pytest.mark.parametrize('index', range(5))
def test_silhouettes_match_the_voxels(index):
  voxels = _grids(5)[index]
  cam = camera_lib.sample_cameras(np.random.default_rng(index), 8)
  alpha = render.render(voxels, cam, np.ones(3) / 2, shading.CAMERA_LIGHT)[..., 3] > 0
  sil = camera_lib.voxel_silhouettes(voxels, render.grid_side(voxels), cam)
  assert _iou(alpha, sil).mean() >= 0.85, _iou(alpha, sil)
  if index == 0:  # an asymmetric chair: the wrong camera fails the check
    rotated = cam.copy()
    rotated[:, 0] += 90
    sil = camera_lib.voxel_silhouettes(voxels, render.grid_side(voxels), rotated)
    assert _iou(alpha, sil).mean() < 0.75


def test_no_voxel_cubes():
  """A voxelised sphere renders with smooth shading: many grey levels in small steps. Normals
  of the narrowly blurred grid (the mesh's own) ripple with the voxel steps: median step 6,
  90th percentile 25 on this sphere; the wider blur's normals give 2 and 11."""
  c = np.arange(32) - 15.5
  sphere = (c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None] ** 2) < 14**2
  cam = camera_lib.sample_cameras(np.random.default_rng(0), 4)
  light = shading.Light(0.2, 0.8, 0.0, (0.0, 0.0, -1.0))
  image = render.render(sphere, cam, np.ones(3), light)
  grey, covered = image[..., 0].astype(int), image[..., 3] > 0
  steps = np.abs(np.diff(grey, axis=1))[covered[:, 1:] & covered[:, :-1]]  # vertical
  assert len(np.unique(grey[covered])) > 80
  assert np.median(steps) <= 3 and np.percentile(steps, 90) <= 15, np.percentile(steps, 90)


def test_thin_parts_survive_the_smoothing():
  rod = np.zeros((32, 32, 32), bool)
  rod[16, 2:30, 16] = True  # a one-voxel leg
  cam = camera_lib.sample_cameras(np.random.default_rng(0), 4)
  alpha = render.render(rod, cam, np.ones(3), shading.CAMERA_LIGHT)[..., 3] > 0
  sil = camera_lib.voxel_silhouettes(rod, render.grid_side(rod), cam)
  assert _iou(alpha, sil).min() > 0.5


def test_colour_and_light_vary_per_object(tmp_path):
  manual = str(_manual_dir(tmp_path, _grids(1) * 4))
  means = []
  for i in range(4):
    obj = builder.make_object(manual, CHAIR, f'model{i:02d}', seed=0)
    covered = obj['images'][..., 3] > 0
    means.append(obj['images'][..., :3][covered].mean(0))
  spread = np.ptp(np.array(means), axis=0)  # same shape, different colour and light
  assert spread.max() > 40, means


def test_missing_folders_say_what_is_needed(tmp_path):
  (tmp_path / 'empty' / 'other').mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match='has no ShapeNetVox32/ folder'):
    build.build('shapenet_vox', str(tmp_path / 'tfds'), None, str(tmp_path / 'empty'))
  manual = _manual_dir(tmp_path / 'm', _grids(1))
  split = _split_file(tmp_path / 's.json', CHAIR, ['nope'], [], ['model00'])
  with pytest.raises(DataError, match=r"split\(s\) \['train'\] of shapenet_vox would be empty"):
    build.build('shapenet_vox', str(tmp_path / 'tfds'), None, str(manual), str(split))


@needs_chairs
def test_real_chairs_render_like_their_voxels():
  ids = sorted(os.listdir(os.path.join(CHAIRS, 'ShapeNetVox32', CHAIR)))[:4]
  for model_id in ids:
    obj = builder.make_object(CHAIRS, CHAIR, model_id, seed=0)
    sil = camera_lib.voxel_silhouettes(
      obj['voxels'], render.grid_side(obj['voxels']), obj['camera']
    )
    assert _iou(obj['images'][..., 3] > 0, sil).mean() >= 0.85, model_id
