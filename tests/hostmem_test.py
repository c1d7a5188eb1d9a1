"""hostmem: when the huge-pages tunable is added, and that a command re-executes with it."""

import os
import pathlib
import subprocess
import sys

import pytest

from refine3d_jax import hostmem

GLIBC = ('glibc', '2.36')


@pytest.fixture
def thp(tmp_path):
  def mode(text):
    path = tmp_path / f'enabled_{len(list(tmp_path.iterdir()))}'  # one file per mode
    path.write_text(text)
    return str(path)

  return mode


def test_environment_adds_the_tunable(thp):
  madvise = thp('always [madvise] never\n')
  env = hostmem.environment({'PATH': '/bin'}, madvise, GLIBC)
  assert env == {'PATH': '/bin', 'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1', hostmem.SWITCH: '1'}
  other = {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}
  assert hostmem.environment(other, thp('[always] madvise never\n'), GLIBC)['GLIBC_TUNABLES'] == (
    'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'
  )


def test_environment_leaves_it_where_set_switched_off_or_unsupported(thp, tmp_path):
  madvise = thp('always [madvise] never\n')
  for env in (
    {hostmem.SWITCH: '0'},  # the user's opt-out
    {hostmem.SWITCH: '1'},  # re-executed already
    {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'},  # the user's own setting
  ):
    assert hostmem.environment(env, madvise, GLIBC) is None
  assert hostmem.environment({}, thp('always madvise [never]\n'), GLIBC) is None
  assert hostmem.environment({}, str(tmp_path / 'missing'), GLIBC) is None
  assert hostmem.environment({}, madvise, ('glibc', '2.31')) is None
  assert hostmem.environment({}, madvise, ('', '')) is None  # musl, or unknown


def test_command_reruns_scripts_and_modules_only():
  py = '/usr/bin/python3'
  assert hostmem.command(['main.py', '--a=1'], [py, 'main.py', '--a=1']) == ['main.py', '--a=1']
  assert hostmem.command(['main.py'], [py, '-X', 'dev', 'main.py']) == ['-X', 'dev', 'main.py']
  bench = ['/repo/refine3d_jax/bench.py', '--steps=2']
  assert hostmem.command(bench, [py, '-m', 'refine3d_jax.bench', '--steps=2']) == [
    '-m',
    'refine3d_jax.bench',
    '--steps=2',
  ]
  assert hostmem.command(['-'], [py, '-']) is None  # the script came from stdin
  assert hostmem.command(['-c'], [py, '-c', 'import runpy; ...']) is None
  assert hostmem.command(['main.py'], [py, '/usr/bin/ipython']) is None  # %run main.py


CHILD = """
import os, sys
from refine3d_jax import hostmem
hostmem.use_huge_pages()
print(os.environ.get('GLIBC_TUNABLES'), os.environ.get(hostmem.SWITCH), sys.argv[1:])
"""


@pytest.mark.skipif(not hostmem.supported(), reason='no glibc >= 2.35 with transparent huge pages')
def test_use_huge_pages_reexecutes_the_command_once(tmp_path):
  script = tmp_path / 'child.py'
  script.write_text(CHILD)
  env = {k: v for k, v in os.environ.items() if k not in ('GLIBC_TUNABLES', hostmem.SWITCH)}
  env['PYTHONPATH'] = str(pathlib.Path(__file__).resolve().parents[1])
  run = lambda env: subprocess.run(
    [sys.executable, str(script), '--flag=1'],
    env=env,
    capture_output=True,
    text=True,
    check=True,
    timeout=120,
  ).stdout.split()
  assert run(env) == ['glibc.malloc.hugetlb=1', '1', "['--flag=1']"]
  assert run({**env, hostmem.SWITCH: '0'})[:2] == ['None', '0']
