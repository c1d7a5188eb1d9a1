"""Tests for refine3d_jax.data.binvox."""

import glob
import os

import numpy as np
import pytest

from refine3d_jax.data import binvox

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, '..', 'shared', 'shapenet_r2n2_sample', 'paired')
needs_sample = pytest.mark.skipif(
  not os.path.isdir(SAMPLE), reason=f'real ShapeNet sample not found at {SAMPLE}'
)


def independent_decode(path):
  """Plain numpy RLE expansion of a binvox file, transposed (0, 2, 1)."""
  with open(path, 'rb') as f:
    data = f.read()
  lines, rest = data.split(b'\ndata\n', 1)
  dims = [int(x) for x in lines.split(b'\n')[1].split()[1:]]
  pairs = np.frombuffer(rest, np.uint8).reshape(-1, 2)
  flat = np.concatenate([np.full(n, v, bool) for v, n in pairs])
  return flat.reshape(dims).transpose(0, 2, 1)


@pytest.mark.parametrize(
  'shape,density', [((32, 32, 32), 0.3), ((8, 5, 7), 0.5), ((32, 32, 32), 0.0), ((20, 20, 20), 1.0)]
)
def test_round_trip(tmp_path, shape, density):
  voxels = np.random.default_rng(0).random(shape) < density
  path = tmp_path / 'v.binvox'
  binvox.write_binvox(path, voxels, translate=(0.5, -1.0, 2.0), scale=0.75)
  read, header = binvox.read_binvox(path)
  assert read.dtype == bool and read.shape == shape
  np.testing.assert_array_equal(read, voxels)
  assert header['dims'] == (shape[0], shape[2], shape[1])
  assert header['translate'] == (0.5, -1.0, 2.0) and header['scale'] == 0.75
  np.testing.assert_array_equal(independent_decode(path), voxels)  # standard layout
  assert not [p for p in os.listdir(tmp_path) if p.endswith('.tmp')]


def test_long_runs_split_at_255(tmp_path):
  voxels = np.ones((32, 32, 32), bool)
  binvox.write_binvox(tmp_path / 'v.binvox', voxels)
  data = (tmp_path / 'v.binvox').read_bytes()
  runs = np.frombuffer(data.split(b'data\n', 1)[1], np.uint8).reshape(-1, 2)
  assert runs[:, 1].max() == 255 and runs[:, 1].astype(int).sum() == 32**3
  assert data.startswith(b'#binvox 1\ndim 32 32 32\ntranslate ')


@needs_sample
def test_real_sample_matches_independent_decode():
  paths = sorted(glob.glob(os.path.join(SAMPLE, 'ShapeNetVox32', '*', '*', 'model.binvox')))
  assert len(paths) == 11
  for path in paths:
    voxels, header = binvox.read_binvox(path)
    assert header['dims'] == (32, 32, 32) and voxels.shape == (32, 32, 32)
    expected = independent_decode(path)
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(voxels, expected)
    with open(path, 'rb') as f:
      np.testing.assert_array_equal(binvox.read_binvox(f.read())[0], expected)


def _good_bytes():
  return b'#binvox 1\ndim 2 2 2\ntranslate 0 0 0\nscale 1\ndata\n' + bytes([1, 3, 0, 5])


@pytest.mark.parametrize(
  'data,match',
  [
    (b'#notbinvox\n' + _good_bytes()[10:], 'bad magic'),
    (_good_bytes().replace(b'dim 2 2 2', b'dim 2 2'), 'bad dim'),
    (_good_bytes().replace(b'dim 2 2 2', b'dim 2 -2 2'), 'bad dim'),
    (_good_bytes().replace(b'dim 2 2 2\n', b''), 'bad dims'),
    (_good_bytes()[:-1], 'truncated data'),
    (_good_bytes()[:-2], 'truncated data'),
    (_good_bytes()[:-1] + bytes([6]), 'run lengths sum to 9, expected 8'),
    (_good_bytes().split(b'data')[0], 'truncated header'),
  ],
)
def test_malformed_raises_naming_file(tmp_path, data, match):
  path = tmp_path / 'broken.binvox'
  path.write_bytes(data)
  with pytest.raises(ValueError, match=match) as e:
    binvox.read_binvox(path)
  assert str(path) in str(e.value)


def test_good_bytes_decode():
  voxels, _ = binvox.read_binvox(_good_bytes())
  np.testing.assert_array_equal(voxels.reshape(-1)[:3], True)
  assert voxels.sum() == 3
