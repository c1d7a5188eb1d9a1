"""The workdir: default names per config, one live trainer at a time, stale locks ignored."""

import os
import subprocess
import sys

import ml_collections
import pytest

from refine3d_jax import errors, workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_default_workdir_names_the_config_and_the_preset():
  assert workdir.default_workdir('configs/jtso.py', 'quick') == 'runs/jtso_quick'
  assert workdir.default_workdir('configs/end_to_end.py:paper', 'paper') == (
    'runs/end_to_end_paper'
  )


def test_run_differences():
  saved = ml_collections.ConfigDict(
    dict(
      preset='quick',
      train=dict(schedule='jtso'),
      data=dict(dataset='shapenet_vox', builder_config=''),
    )
  )
  same = ml_collections.ConfigDict(saved.to_dict())
  same.data.builder_config = None  # '' and None both mean the default config
  assert workdir.run_differences(saved, same) == []
  same.data.builder_config = 'pix2vox'  # shapenet_vox's default config, named
  assert workdir.run_differences(saved, same) == []
  same.data.builder_config = 'r2n2'
  assert workdir.run_differences(saved, same) == [
    "data.builder_config: saved 'pix2vox', now 'r2n2'"
  ]
  other = ml_collections.ConfigDict(saved.to_dict())
  other.preset, other.data.dataset = 'tiny', 'synthetic_shapes'
  assert workdir.run_differences(saved, other) == [
    "preset: saved 'quick', now 'tiny'",
    "data.dataset: saved 'shapenet_vox', now 'synthetic_shapes'",
  ]


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
  with workdir.hold(str(tmp_path)):
    with pytest.raises(
      workdir.WorkdirInUseError, match=rf'in use by process {os.getpid()} on .* another --workdir'
    ):
      with workdir.hold(str(tmp_path)):
        pass
  with workdir.hold(str(tmp_path)):  # released on exit
    pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
  """A holder killed with SIGKILL cannot clean up; the next run still gets the workdir."""
  code = (
    'import sys, time; from refine3d_jax import workdir\n'
    'with workdir.hold(sys.argv[1]):\n  print("held", flush=True); time.sleep(60)'
  )
  proc = subprocess.Popen(
    [sys.executable, '-c', code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
  )
  try:
    assert proc.stdout.readline().strip() == 'held'
    with pytest.raises(workdir.WorkdirInUseError, match=f'process {proc.pid} '):
      with workdir.hold(str(tmp_path)):
        pass
  finally:
    proc.kill()
    proc.wait()
  assert os.path.exists(os.path.join(tmp_path, workdir.LOCK))
  with workdir.hold(str(tmp_path)):
    pass


def test_an_unwritable_workdir_is_one_clear_error(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  with pytest.raises(
    errors.NotWritableError, match=f'workdir {blocker}/run is not writable: .*Not a directory'
  ) as e:
    with workdir.hold(str(blocker / 'run')):
      pass
  assert isinstance(e.value, OSError)  # as before: callers catching OSError still do
