"""show.py writes a PNG for an example, and says how to build a missing dataset."""

import subprocess
import sys

from PIL import Image
import pytest

from refine3d_jax import errors
from refine3d_jax.data import show
from refine3d_jax.data.synthetic_shapes import SyntheticShapes


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp('data')
  SyntheticShapes(config='tiny', data_dir=str(path)).download_and_prepare()
  return path


def test_show_writes_png(data_dir, tmp_path):
  out = tmp_path / 'x.png'
  show.main(str(data_dir), 'synthetic_shapes/tiny', 'validation', 2, str(out), views=[0, 5, 9])
  with Image.open(out) as im:
    assert im.size[0] > 300 and im.size[1] > 100


def test_show_cli(data_dir, tmp_path):
  out = tmp_path / 'cli.png'
  subprocess.run(
    [
      sys.executable,
      '-m',
      'refine3d_jax.data.show',
      f'--data_dir={data_dir}',
      '--dataset=synthetic_shapes/tiny',
      '--index=1',
      f'--out={out}',
    ],
    check=True,
    capture_output=True,
  )
  assert out.stat().st_size > 1000


def test_a_leading_tilde_is_the_home_directory(data_dir, monkeypatch):
  monkeypatch.setenv('HOME', str(data_dir.parent))
  path = show.dataset_dir(f'~/{data_dir.name}', 'synthetic_shapes/tiny')
  assert path == str(data_dir / 'synthetic_shapes' / 'tiny' / str(SyntheticShapes.VERSION))


def test_missing_dataset_says_how_to_build(tmp_path):
  with pytest.raises(
    errors.NotFoundError, match='refine3d_jax.data.build --dataset=synthetic_shapes'
  ):
    show.dataset_dir(str(tmp_path), 'synthetic_shapes')
  proc = subprocess.run(
    [sys.executable, '-m', 'refine3d_jax.data.show', f'--data_dir={tmp_path}'],
    capture_output=True,
    text=True,
  )
  assert proc.returncode == 1 and 'Traceback' not in proc.stderr
  assert (
    proc.stderr.strip()
    .splitlines()[-1]
    .startswith("error: Dataset 'synthetic_shapes' is not built")
  )


def test_import_defines_no_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top

  assert 'index' not in flags.FLAGS
