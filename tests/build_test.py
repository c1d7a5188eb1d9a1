"""Tests for the dataset build command refine3d_jax.data.build."""

import os
import site
import subprocess
import sys
import types

import pytest

from refine3d_jax.data import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, '..', 'shared', 'shapenet_r2n2_sample', 'paired')
needs_sample = pytest.mark.skipif(
  not os.path.isdir(SAMPLE), reason=f'real ShapeNet sample not found at {SAMPLE}'
)


def run_command(*args, cwd=ROOT, **environ):
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'} | environ
  return subprocess.run(
    [sys.executable, '-m', 'refine3d_jax.data.build', *args],
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_import_defines_no_flags_and_imports_no_builder():
  code = (
    'import sys; from absl import flags; import refine3d_jax.data.build as b; '
    'assert b.__file__.startswith(sys.argv[1]), b.__file__; '
    'assert not {"dataset", "data_dir", "manual_dir"} & set(flags.FLAGS), "flags"; '
    'assert not [m for m in sys.modules if "synthetic_shapes" in m or "shapenet_r2n2" in m]'
  )
  result = subprocess.run(
    [sys.executable, '-c', code, ROOT], cwd=ROOT, capture_output=True, text=True, timeout=60
  )
  assert result.returncode == 0, result.stderr[-2000:]


@needs_sample
def test_command_builds_the_sample(tmp_path):
  result = run_command(
    '--dataset=shapenet_r2n2',
    '--builder_config=r2n2_5class',
    f'--manual_dir={SAMPLE}',
    f'--data_dir={tmp_path}',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  path = os.path.join(tmp_path, 'shapenet_r2n2', 'r2n2_5class', '1.1.0')
  assert f'shapenet_r2n2/r2n2_5class built in {path}' in result.stdout
  # 5 classes present in the sample: 7 chairs -> 5/2, 1 bench -> test, 1 watercraft -> test;
  # validation carved from train: the last of the 5 train chairs.
  assert 'train: 4 examples (skipped: none)' in result.stdout
  assert 'validation: 1 examples (skipped: none)' in result.stdout
  assert 'test: 4 examples (skipped: none)' in result.stdout
  assert 'time: ' in result.stdout
  assert 'Generating train examples' in result.stderr  # the progress bar
  again = build.build('shapenet_r2n2', str(tmp_path), 'r2n2_5class', SAMPLE)
  assert again['reused'] and again['splits'] == {'train': 4, 'validation': 1, 'test': 4}


@needs_sample
def test_build_reports_skips(tmp_path):
  summary = build.build('shapenet_r2n2', str(tmp_path), 'pix2vox_5class', SAMPLE)
  # The shipped Pix2Vox split names thousands of objects the sample lacks.
  assert summary['splits'] == {'train': 2, 'validation': 1, 'test': 6}
  assert summary['skipped']['train']['not_in_manual_dir'] > 1000
  text = build.format_summary('shapenet_r2n2', summary)
  assert 'train: 2 examples (skipped: not_in_manual_dir=' in text


def test_a_leading_tilde_is_the_home_directory(tmp_path):
  """The README's `--data_dir=~/tensorflow_datasets`: a shell leaves that `~` as it is, and
  the command builds under the home directory, not in a folder named `~` of the cwd."""
  home, cwd = tmp_path / 'home', tmp_path / 'cwd'
  cwd.mkdir()
  # this checkout's package from another cwd, and the user's site-packages under a new HOME
  env = {'HOME': str(home), 'PYTHONPATH': ROOT, 'PYTHONUSERBASE': site.getuserbase()}
  args = ('--dataset=synthetic_shapes', '--builder_config=tiny', '--data_dir=~/tfds')
  result = run_command(*args, '--manual_dir=~/none', cwd=cwd, **env)
  assert result.returncode != 0 and f'--manual_dir={home}/none does not exist' in result.stderr
  result = run_command(*args, cwd=cwd, **env)
  assert result.returncode == 0, result.stderr[-3000:]
  path = home / 'tfds' / 'synthetic_shapes' / 'tiny'
  assert f'synthetic_shapes/tiny built in {path}/' in result.stdout
  version = str(build.builder_class('synthetic_shapes').VERSION)
  assert (path / version / 'dataset_info.json').exists() and not os.listdir(cwd)


def test_missing_manual_dir_says_what_to_download(tmp_path):
  result = run_command(
    '--dataset=shapenet_r2n2', f'--manual_dir={tmp_path}/none', f'--data_dir={tmp_path}'
  )
  assert result.returncode != 0
  assert f'{tmp_path}/none does not exist' in result.stderr
  assert 'ShapeNetRendering.tgz' in result.stderr and 'ShapeNetVox32.tgz' in result.stderr
  assert 'Traceback' not in result.stderr


def test_synthetic_shapes_dispatch(monkeypatch):
  name = 'refine3d_jax.data.synthetic_shapes'
  monkeypatch.setitem(sys.modules, name, None)  # as if the package were absent
  with pytest.raises(ModuleNotFoundError, match='not in this checkout'):
    build.builder_class('synthetic_shapes')
  fake = types.ModuleType(name)
  fake.SyntheticShapes = type('SyntheticShapes', (), {})
  monkeypatch.setitem(sys.modules, name, fake)
  assert build.builder_class('synthetic_shapes') is fake.SyntheticShapes
  with pytest.raises(ValueError, match='unknown --dataset'):
    build.builder_class('imagenet')


@needs_sample
def test_a_corrupt_file_is_one_line(tmp_path):
  """The build command prints a data error as one line naming the file, no traceback."""
  # pylint: disable-next=g-import-not-at-top
  from tests.shapenet_r2n2_test import CHAIR, CHAIRS, copy_object, write_split

  manual = tmp_path / 'manual'
  copy_object(manual, CHAIR, CHAIRS[0])
  vox = manual / 'ShapeNetVox32' / CHAIR / CHAIRS[0] / 'model.binvox'
  vox.write_bytes(vox.read_bytes()[:-3])
  split = write_split(tmp_path / 's.json', {'train': [CHAIRS[0]]})
  proc = run_command(
    '--dataset=shapenet_r2n2',
    '--builder_config=pix2vox',
    f'--data_dir={tmp_path / "data"}',
    f'--manual_dir={manual}',
    f'--split_file={split}',
  )
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
    f'error: {vox}: truncated data (odd number of run bytes: 1807)'
  )
  assert 'Traceback' not in proc.stderr
