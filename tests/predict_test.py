"""The predict command and Reconstructor on a tiny trained workdir: inputs of every kind,
the files written, permutation invariance, the preprocessing and one-line errors."""

import glob
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
import trimesh

from configs import jtso as jtso_config
from refine3d_jax import input_pipeline, parallel, predict
from refine3d_jax.data import binvox, photos, transforms
from refine3d_jax.models.refine3d import create_model, init_variables
from tests.photos_test import on_backdrop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, '..', 'shared', 'shapenet_r2n2_sample', 'ShapeNetRendering')


def run_predict(*args, timeout=300):
  return subprocess.run(
    [sys.executable, '-m', 'refine3d_jax.predict', *map(str, args)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def error_lines(proc):
  """The command failed with no traceback; returns its stderr lines that start 'error:'."""
  assert proc.returncode != 0, proc.stdout[-2000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  return [line for line in proc.stderr.splitlines() if line.startswith('error:')]


@pytest.fixture(scope='module')
def trained(tiny_workdir):
  """conftest's tiny workdir (synthetic_shapes/tiny: 5 test objects, one per category)."""
  return tiny_workdir


@pytest.fixture(scope='module')
def reconstructor(trained):
  return predict.Reconstructor.from_workdir(trained)


@pytest.fixture(scope='module')
def renderings(reconstructor):
  """uint8 [137, 137, 4] views 0, 6, 12 of test object 0 (RGBA, as rendered)."""
  example = input_pipeline.open_source(reconstructor.config.data, 'test')[0]
  return [transforms.decode_png(example['images'][v]) for v in (0, 6, 12)]


@pytest.fixture(scope='module')
def photo_folder(renderings, tmp_path_factory):
  """A folder of one object's images in every accepted kind: RGBA and grey+alpha PNG, RGB
  PNG and JPEG photos of 300x200, a grey photo, an odd-sized RGBA."""
  folder = tmp_path_factory.mktemp('photos')
  a, b, c = renderings
  Image.fromarray(a).save(folder / 'rgba.png')
  Image.fromarray(a).convert('LA').save(folder / 'grey_alpha.png')
  Image.fromarray(on_backdrop(b, (200, 300), (30, 120))).save(folder / 'rgb_300x200.png')
  Image.fromarray(on_backdrop(c, (200, 300), (50, 20))).save(folder / 'rgb_300x200.jpg', quality=90)
  Image.fromarray(on_backdrop(a, (150, 151), (5, 7))).convert('L').save(folder / 'grey.jpg')
  Image.fromarray(b).resize((61, 97)).save(folder / 'odd_61x97.png')
  return folder


def test_reconstructs_every_kind_of_image(reconstructor, photo_folder):
  paths = photos.list_images([str(photo_folder)])
  assert [os.path.basename(p) for p in paths] == [
    'grey.jpg',
    'grey_alpha.png',
    'odd_61x97.png',
    'rgb_300x200.jpg',
    'rgb_300x200.png',
    'rgba.png',
  ]
  images = [photos.read_image(p) for p in paths]
  assert [im.shape for im in images] == [
    (150, 151, 3),
    (137, 137, 4),
    (97, 61, 4),
    (200, 300, 3),
    (200, 300, 3),
    (137, 137, 4),
  ]
  size = reconstructor.config.model.volume_size
  for image in images:
    probs = reconstructor.reconstruct([image], background='auto')
    assert probs.shape == (size,) * 3 and probs.dtype == np.float32
    assert np.isfinite(probs).all() and 0 <= probs.min() and probs.max() <= 1
  both = reconstructor.predict(images)
  s = reconstructor.config.model.image_size
  assert both['views'].shape == (6, s, s, 3) and both['coarse'].shape == (size,) * 3
  # grey 2-D arrays and floats in [0, 1] are images too
  grey = images[0][..., 0]
  np.testing.assert_array_equal(
    reconstructor.reconstruct([grey]), reconstructor.reconstruct([images[0]])
  )
  np.testing.assert_array_equal(
    reconstructor.reconstruct([images[3] / 255.0]), reconstructor.reconstruct([images[3]])
  )


def test_permutation_does_not_change_the_output(reconstructor, photo_folder):
  images = [photos.read_image(p) for p in photos.list_images([str(photo_folder)])]
  order = [3, 0, 5, 1, 4, 2]
  first = reconstructor.predict(images)
  second = reconstructor.predict([images[i] for i in order])
  for name in ('refined', 'coarse'):
    np.testing.assert_array_equal(first[name], second[name])
  np.testing.assert_array_equal(second['views'], first['views'][order])  # given order
  # the model itself is invariant up to rounding: the fixed order only makes it exact
  inputs, _ = reconstructor.views(images)
  a = reconstructor._forward(reconstructor.variables, inputs[None])['refined']
  b = reconstructor._forward(reconstructor.variables, inputs[order][None])['refined']
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_image_framing_of_a_rendering_is_the_eval_pipeline(reconstructor, renderings):
  """Renderings given as they are reach the model exactly as the evaluation feeds them."""
  example = input_pipeline.open_source(reconstructor.config.data, 'test')[0]
  expected = input_pipeline.make_example(example, 0, [0, 6, 12], 3, reconstructor.options, None)[
    'images'
  ]
  inputs, _ = reconstructor.views(renderings, framing='image')
  np.testing.assert_array_equal(inputs, expected)


def test_not_a_checkpoint_step_folder(tmp_path):
  with pytest.raises(photos.InputError, match='not a checkpoint step folder'):
    predict.split_checkpoint_path(str(tmp_path))


def cube(size=16, lo=3, hi=9):
  probs = np.zeros((size,) * 3, np.float32)
  probs[lo:hi, lo : hi + 2, lo:hi] = 1.0  # a box, longer along y (up)
  return probs


def test_binvox_reads_back_with_the_standard_header(tmp_path):
  probs = cube()
  probs[0, 0, 1] = 0.9  # tells the axes apart
  views = np.zeros((2, 16, 16, 3), np.uint8)
  predict.write_outputs(str(tmp_path), probs, 0.3, views, ['a', 'b'], 'cube', {})
  voxels = np.load(tmp_path / 'voxels.npy')
  np.testing.assert_array_equal(voxels, probs >= 0.3)
  np.testing.assert_array_equal(np.load(tmp_path / 'probabilities.npy'), probs)
  read, header = binvox.read_binvox(tmp_path / 'model.binvox')
  np.testing.assert_array_equal(read, voxels)
  data = (tmp_path / 'model.binvox').read_bytes()
  assert data.startswith(b'#binvox 1\ndim 16 16 16\ntranslate 0.0 0.0 0.0\nscale 1.0\ndata\n')
  assert header == {'dims': (16, 16, 16), 'translate': (0.0, 0.0, 0.0), 'scale': 1.0}
  # the file's own order is x, z, y (as ShapeNetVox32): plain run-length decoding
  pairs = np.frombuffer(data.split(b'\ndata\n', 1)[1], np.uint8).reshape(-1, 2)
  flat = np.repeat(pairs[:, 0] > 0, pairs[:, 1])
  np.testing.assert_array_equal(flat.reshape(16, 16, 16), voxels.transpose(0, 2, 1))
  assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]


@pytest.mark.parametrize('lo,hi', [(3, 9), (0, 14)])  # inside, and touching the grid's sides
def test_meshes_are_watertight_for_a_solid_box(tmp_path, lo, hi):
  probs = cube(lo=lo, hi=hi)
  predict.write_outputs(
    str(tmp_path), probs, 0.3, np.zeros((1, 8, 8, 3), np.uint8), ['a'], 'box', {}
  )
  for ext in ('obj', 'ply'):
    mesh = trimesh.load(tmp_path / f'mesh.{ext}', force='mesh')
    assert mesh.is_watertight and mesh.is_winding_consistent, ext
    assert mesh.volume > 0, ext  # faces point outwards
    # the surface p = 0.3 lies 0.7 voxel outside the outer voxel centres, (i + 0.5) / S
    low = (np.array([lo, lo, lo]) + 0.5 - 0.7) / 16
    high = (np.array([hi, hi + 2, hi]) - 0.5 + 0.7) / 16
    np.testing.assert_allclose(mesh.bounds, [low, high], atol=1e-5)


def test_empty_volume_writes_empty_meshes(tmp_path):
  predict.write_outputs(
    str(tmp_path),
    np.full((8, 8, 8), 0.1, np.float32),
    0.3,
    np.zeros((1, 8, 8, 3), np.uint8),
    ['a'],
    'empty',
    {},
  )
  assert (tmp_path / 'mesh.obj').read_text().startswith('# no voxel')
  assert len(trimesh.load(tmp_path / 'mesh.ply', force='mesh').faces) == 0
  assert json.loads((tmp_path / 'prediction.json').read_text())['occupied'] == 0


def test_command_writes_every_file(trained, photo_folder, tmp_path):
  """--checkpoint=<step folder> (no --workdir), images as a folder plus a plain argument."""
  out = tmp_path / 'out'
  step_dir = os.path.join(trained, 'checkpoints', '2')
  proc = run_predict(
    f'--checkpoint={step_dir}',
    '--images',
    photo_folder / 'rgba.png',
    photo_folder / 'rgb_300x200.jpg',
    '--background=auto',
    '--threshold=0.4',
    f'--out={out}',
    '--title=Test views',
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'wrote voxels.npy' in proc.stdout
  assert sorted(os.listdir(out)) == sorted(
    [
      'voxels.npy',
      'probabilities.npy',
      'model.binvox',
      'mesh.obj',
      'mesh.ply',
      'preview.png',
      'prediction.json',
    ]
  )
  info = json.loads((out / 'prediction.json').read_text())
  assert info['step'] == 2 and info['threshold'] == 0.4 and info['output'] == 'refined'
  assert [os.path.basename(p) for p in info['images']] == ['rgba.png', 'rgb_300x200.jpg']
  probs = np.load(out / 'probabilities.npy')
  np.testing.assert_array_equal(np.load(out / 'voxels.npy'), probs >= 0.4)
  np.testing.assert_array_equal(binvox.read_binvox(out / 'model.binvox')[0], probs >= 0.4)
  assert Image.open(out / 'preview.png').size[0] > 600


@pytest.mark.skipif(
  not os.path.isdir(SAMPLE), reason=f'real ShapeNet sample views not found at {SAMPLE}'
)
def test_command_on_real_shapenet_views(trained, tmp_path):
  folder = sorted(glob.glob(os.path.join(SAMPLE, '*', '*', 'rendering')))[0]
  proc = run_predict(f'--workdir={trained}', f'--images={folder}', '--coarse', f'--out={tmp_path}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  info = json.loads((tmp_path / 'prediction.json').read_text())
  assert len(info['images']) == 24 and info['output'] == 'coarse'
  assert np.load(tmp_path / 'probabilities.npy').shape == (16, 16, 16)


def test_errors_are_one_line_naming_the_file(trained, photo_folder, tmp_path):
  bad, empty = tmp_path / 'bad.png', tmp_path / 'empty.jpg'
  bad.write_text('not an image')
  empty.write_bytes(b'')
  missing = tmp_path / 'no_run'
  ok = photo_folder / 'rgba.png'
  cases = [
    (
      (f'--workdir={missing}', f'--images={ok}'),
      f'error: {missing}: no checkpoints ({missing}/checkpoints does not exist); train '
      f'first: python main.py --workdir={missing}',
    ),
    (
      (f'--workdir={trained}', f'--images={bad}'),
      f'error: {bad}: not a PNG or JPEG image (PIL cannot identify it)',
    ),
    ((f'--workdir={trained}', '--images', ok, empty), f'error: {empty}: empty file (0 bytes)'),
    (
      (f'--workdir={trained}',),
      'error: no images given: pass --images a.png b.jpg ... (files or folders)',
    ),
  ]
  for args, expected in cases:
    assert error_lines(run_predict(*args, f'--out={tmp_path / "out"}')) == [expected]
  assert not (tmp_path / 'out').exists()


def test_forward_compiles_as_a_single_device_program(monkeypatch):
  """One photo set on one device: YNNPACK's one-thread convolutions off where the CPU has
  more cores (parallel.single_device_options)."""
  monkeypatch.setattr(parallel, 'usable_cores', lambda: 2)
  config = jtso_config.get_config('tiny')
  model = create_model(config.model)
  variables = init_variables(model, jax.random.key(0))
  s = config.model.image_size
  x = jnp.zeros((1, 2, s, s, 3))
  plain = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).compile()
  if jax.default_backend() != 'cpu' or '__ynn' not in plain.as_text():
    pytest.skip('this backend compiles the model without YNNPACK fusions anyway')
  forward = predict.Reconstructor(config, model, variables)._forward
  assert '__ynn' not in forward.lower(variables, x).compile().as_text()
