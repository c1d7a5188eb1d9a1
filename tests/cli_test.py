"""cli: a user's mistake is one `error:` line and exit status 1 (a bug keeps its traceback); the
usage checks commands share."""

import logging as std_logging
import os
import subprocess
import sys

from absl import app
import pytest

from refine3d_jax import cli, errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_command(raise_line: str, *args: str) -> subprocess.CompletedProcess:
  """A command whose main runs `raise_line`, under cli.run."""
  program = (
    'from refine3d_jax import cli, configlib, errors\n'
    'def main(argv):\n'
    f'  {raise_line}\n'
    'cli.run(main)\n'
  )
  return subprocess.run(
    [sys.executable, '-c', program, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
  )


@pytest.mark.parametrize(
  'raise_line, line',
  [
    ("raise errors.UserError('the thing is wrong')", 'error: the thing is wrong'),
    (
      "raise configlib.ConfigError('config.seed = -1: must be ...')",
      'error: config.seed = -1: must be ...',
    ),
    ("raise errors.NotFoundError('no checkpoints in w')", 'error: no checkpoints in w'),
  ],
)
def test_a_user_error_is_one_line(raise_line, line):
  proc = run_command(raise_line)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [line]


@pytest.mark.parametrize(
  'raise_line, last',
  [
    (
      "raise FileNotFoundError(2, 'No such file or directory', 'x.json')",
      "FileNotFoundError: [Errno 2] No such file or directory: 'x.json'",
    ),
    ("raise OSError(28, 'No space left on device')", 'OSError: [Errno 28] No space left on device'),
    ("raise ValueError('a bug')", 'ValueError: a bug'),
  ],
)
def test_any_other_error_keeps_its_traceback(raise_line, last):
  proc = run_command(raise_line)
  assert proc.returncode == 1
  assert 'Traceback (most recent call last)' in proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == last


def test_an_unknown_config_key_is_one_line():
  program = (
    'from ml_collections import config_flags\n'
    'from refine3d_jax import cli\n'
    "config_flags.DEFINE_config_file('config', lock_config=True)\n"
    'cli.run(lambda argv: None)\n'
  )
  proc = subprocess.run(
    [sys.executable, '-c', program, '--config=configs/jtso.py:tiny', '--config.train.num_step=3'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
    "error: --config.train.num_step: no such config key 'num_step'. Did you mean "
    '"num_steps" instead of "num_step"?'
  ]


def test_is_url():
  for url in ('https://example.com/a.png', 'gs://bucket/run', 's3://b/k', 'file:///tmp/x'):
    assert cli.is_url(url)
  for path in ('runs/quick', '/data/c:/x', 'C:\\data', '', None, 3):
    assert not cli.is_url(path)
  cli.check_local(None, '--out')  # an unset flag is not a URL
  with pytest.raises(errors.UserError, match="^--out = 'gs://b' is a URL; "):
    cli.check_local('gs://b', '--out')


def test_no_arguments():
  cli.no_arguments(['prog'])
  with pytest.raises(app.UsageError, match=r"unexpected arguments: \['x'\]"):
    cli.no_arguments(['prog', 'x'])


def test_positive_ints():
  assert cli.positive_ints(['1', '20'], 'bad') == [1, 20]
  assert cli.positive_ints([4, 10], 'bad') == [4, 10]
  for values in ([], ['0'], ['1', '-2'], ['x'], ['1.5']):
    with pytest.raises(app.UsageError, match='^bad$'):
      cli.positive_ints(values, 'bad')


def test_orbax_info_lines_are_dropped_and_its_warnings_kept():
  def record(path, level):
    return std_logging.LogRecord('absl', level, path, 1, 'msg', None, None)

  orbax = '/site-packages/orbax/checkpoint/_src/checkpointers/checkpointer.py'
  assert not cli._quiet_orbax(record(orbax, std_logging.INFO))
  assert cli._quiet_orbax(record(orbax, std_logging.WARNING))
  assert cli._quiet_orbax(record('/work/refine3d_jax/train.py', std_logging.INFO))
