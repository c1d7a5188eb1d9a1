"""A training workdir: its default name, what may resume in it, and who holds it.

* The default is `runs/<config file>_<preset>` (`configs/end_to_end.py:quick` ->
  `runs/end_to_end_quick`), so runs of two configs never meet in one workdir by default.
* A checkpoint resumes only into a run of the same preset, schedule and dataset
  (`run_differences`; the model keys are checked by train); fine-tuning on purpose says so.
* One training process at a time: `hold` takes an fcntl lock on `<workdir>/.lock`. The
  kernel drops it when its process ends, however it ends (SIGKILL included), so a rerun
  after a crash resumes; only a live holder refuses, named in the one-line error.
"""

import contextlib
import fcntl
import os
import socket
import time
from typing import Iterator

from absl import logging
import ml_collections

from refine3d_jax import errors

LOCK = '.lock'
# Keys whose change makes a checkpoint another experiment, not a run to resume.
RUN_KEYS = ('preset', 'train.schedule', 'data.dataset', 'data.builder_config')


class WorkdirInUseError(errors.UserError, RuntimeError):
  """Another live process trains in this workdir."""


def default_workdir(config_file: str, preset: str) -> str:
  """runs/<config file name without .py>_<preset>."""
  stem = os.path.splitext(os.path.basename(config_file.split(':', 1)[0]))[0]
  return os.path.join('runs', f'{stem}_{preset}')


def _get(config: ml_collections.ConfigDict, key: str):
  for part in key.split('.'):
    config = config.get(part) if config is not None else None
  return config


def run_differences(
  saved: ml_collections.ConfigDict, current: ml_collections.ConfigDict
) -> list[str]:
  """'key: saved X, now Y' for each of RUN_KEYS that differs ('' and None alike)."""
  out = []
  for key in RUN_KEYS:
    a, b = _get(saved, key) or '', _get(current, key) or ''
    if key == 'data.builder_config' and a != b:  # '' is the builder's default config
      a, b = (_resolved_config(_get(c, 'data.dataset'), v) for c, v in ((saved, a), (current, b)))
    if a != b:
      out.append(f'{key}: saved {a!r}, now {b!r}')
  return out


def _resolved_config(dataset: str | None, builder_config: str) -> str:
  """`builder_config`, or the dataset's default config's name for ''."""
  if builder_config or not dataset:
    return builder_config
  from refine3d_jax.data import build  # pylint: disable=g-import-not-at-top

  try:
    cls = build.builder_class(dataset)
  except (KeyError, ValueError):
    return builder_config
  return cls.default_builder_config.name if cls.BUILDER_CONFIGS else builder_config


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds `workdir` for this process; WorkdirInUseError names a live holder,
  NotWritableError a workdir that cannot be made or written."""
  try:
    os.makedirs(workdir, exist_ok=True)
    fd = os.open(os.path.join(workdir, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise errors.NotWritableError(e.errno, f'workdir {workdir} is not writable: {e}') from None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 500).decode(errors='replace').strip() or 'another process'
      raise WorkdirInUseError(
        f'{workdir} is in use by {holder}: wait for it to end or stop it, or train in '
        'another --workdir'
      ) from None
    except OSError as e:  # a file system without flock (ENOLCK, EOPNOTSUPP): train unguarded
      logging.warning('cannot lock %s (%s): nothing stops a second trainer there', workdir, e)
    os.ftruncate(fd, 0)
    os.write(
      fd,
      f'process {os.getpid()} on {socket.gethostname()} since '
      f'{time.strftime("%Y-%m-%d %H:%M:%S")}'.encode(),
    )
    yield
  finally:
    os.close(fd)  # releases the lock; the file stays (removing it would race a new holder)
