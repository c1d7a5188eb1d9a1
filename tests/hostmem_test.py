"""hostmem: when the huge-pages and keep-freed-memory tunables are added, and that a command
re-executes with them."""

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


@pytest.fixture
def virtio(tmp_path):
  """A fake /sys/bus/virtio/devices with the given (device id, feature bits) devices."""

  def devices(*specs):
    root = tmp_path / f'virtio_{len(list(tmp_path.iterdir()))}'
    for i, (device, features) in enumerate(specs):
      (root / f'virtio{i}').mkdir(parents=True)
      (root / f'virtio{i}' / 'device').write_text(device + '\n')
      (root / f'virtio{i}' / 'features').write_text(features + '\n')
    root.mkdir(exist_ok=True)
    return str(root)

  return devices


REPORTING = '0110010100' + '0' * 54  # this workplace's balloon: bit 5, free page reporting
NO_REPORTING = '0110000100' + '0' * 54


def test_reports_free_pages_reads_the_balloons_feature_bit(virtio, tmp_path):
  assert hostmem.reports_free_pages(virtio(('0x0001', REPORTING), (hostmem.BALLOON, REPORTING)))
  assert not hostmem.reports_free_pages(virtio((hostmem.BALLOON, NO_REPORTING)))
  assert not hostmem.reports_free_pages(virtio(('0x0002', REPORTING)))  # a block device
  assert not hostmem.reports_free_pages(virtio())
  assert not hostmem.reports_free_pages(str(tmp_path / 'no_virtio'))


def test_environment_adds_the_tunable(thp):
  madvise = thp('always [madvise] never\n')
  env = hostmem.environment({'PATH': '/bin'}, madvise, GLIBC)
  assert env == {'PATH': '/bin', 'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1', hostmem.SWITCH: '1'}
  assert not hostmem.keeps_freed_memory(env)
  other = {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}
  assert hostmem.environment(other, thp('[always] madvise never\n'), GLIBC)['GLIBC_TUNABLES'] == (
    'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'
  )


def test_environment_keeps_freed_memory_where_asked(thp):
  madvise = thp('always [madvise] never\n')
  on = {hostmem.KEEP_SWITCH: '1'}
  env = hostmem.environment(on, madvise, GLIBC)
  assert env['GLIBC_TUNABLES'] == ':'.join(('glibc.malloc.hugetlb=1', *hostmem.KEEP))
  assert hostmem.keeps_freed_memory(env)
  for value in ('0', 'yes', ''):
    env = hostmem.environment({hostmem.KEEP_SWITCH: value}, madvise, GLIBC)
    assert env['GLIBC_TUNABLES'] == 'glibc.malloc.hugetlb=1'
  # the user's own arena (or mmap, or trim) setting: none of KEEP's, which work together
  own = {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=4', **on}
  assert hostmem.environment(own, madvise, GLIBC)['GLIBC_TUNABLES'] == (
    'glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1'
  )
  # REFINE3D_HUGE_PAGES=0 keeps all of glibc's defaults
  assert hostmem.environment({hostmem.SWITCH: '0', **on}, madvise, GLIBC) is None
  # KEEP needs glibc, not huge pages: without them, or with the user's own setting of them
  keep = ':'.join(hostmem.KEEP)
  never = thp('always madvise [never]\n')
  assert hostmem.environment(on, never, GLIBC)['GLIBC_TUNABLES'] == keep
  assert hostmem.environment(on, madvise, ('glibc', '2.31'))['GLIBC_TUNABLES'] == keep
  own_pages = {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0', **on}
  assert hostmem.environment(own_pages, madvise, GLIBC)['GLIBC_TUNABLES'] == (
    f'glibc.malloc.hugetlb=0:{keep}'
  )
  assert hostmem.environment(on, madvise, ('', '')) is None  # musl, or unknown


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
hostmem.tune_malloc()
print(os.environ.get('GLIBC_TUNABLES'), os.environ.get(hostmem.SWITCH), sys.argv[1:])
print(hostmem.active(), hostmem.keeps_freed_memory())
"""


@pytest.mark.skipif(not hostmem.supported(), reason='no glibc >= 2.35 with transparent huge pages')
def test_tune_malloc_reexecutes_the_command_once(tmp_path):
  script = tmp_path / 'child.py'
  script.write_text(CHILD)
  drop = ('GLIBC_TUNABLES', hostmem.SWITCH, hostmem.KEEP_SWITCH)
  env = {k: v for k, v in os.environ.items() if k not in drop}
  env['PYTHONPATH'] = str(pathlib.Path(__file__).resolve().parents[1])
  run = lambda env: subprocess.run(
    [sys.executable, str(script), '--flag=1'],
    env=env,
    capture_output=True,
    text=True,
    check=True,
    timeout=120,
  ).stdout.split()
  assert run(env) == [
    'glibc.malloc.hugetlb=1',
    '1',
    "['--flag=1']",
    'True',
    'False',
  ]
  keep = ':'.join(('glibc.malloc.hugetlb=1', *hostmem.KEEP))
  assert run({**env, hostmem.KEEP_SWITCH: '1'}) == [keep, '1', "['--flag=1']", 'True', 'True']
  assert run({**env, hostmem.SWITCH: '0'})[:2] == ['None', '0']
