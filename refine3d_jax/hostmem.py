"""Host memory: glibc's malloc in transparent huge pages, switched on before a command starts.

XLA:CPU mallocs each step's buffers and frees them after it; glibc maps blocks above its
mmap threshold (at most 32 MB) afresh every time, and the kernel zero-fills each 4 KB page
on first touch: 770,000 page faults per stage-1 step of the paper preset on a 2-core AMD
EPYC, 55,000 of the quick preset. With `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc 2.35
or newer) malloc asks for transparent huge pages (2 MB) instead, where the kernel offers
them (`madvise` or `always` in /sys/kernel/mm/transparent_hugepage/enabled). glibc reads
the tunable once, when a process starts, so `use_huge_pages` re-executes the command with
it before anything is allocated. `REFINE3D_HUGE_PAGES=0` (exactly) keeps glibc's defaults.
Measured (BENCHMARKS.md, "huge pages"): the quick preset's training loop 1.08-1.27x per
stage, the paper preset's steps 1.07-1.37x, on that machine.
"""

import os
import platform
import sys
from typing import Mapping

TUNABLE = 'glibc.malloc.hugetlb'
SWITCH = 'REFINE3D_HUGE_PAGES'  # '0': glibc's defaults; '1': set by use_huge_pages
THP_MODE = '/sys/kernel/mm/transparent_hugepage/enabled'


def supported(thp_mode: str = THP_MODE, libc: tuple[str, str] | None = None) -> bool:
  """Linux, glibc >= 2.35 (`libc`: `platform.libc_ver()`'s answer), and the kernel's
  transparent huge pages not `never`."""
  if not sys.platform.startswith('linux'):
    return False
  lib, version = libc or platform.libc_ver()
  try:
    if lib != 'glibc' or tuple(int(p) for p in version.split('.')[:2]) < (2, 35):
      return False
    with open(thp_mode) as f:
      mode = f.read()
  except (ValueError, OSError):
    return False
  return '[always]' in mode or '[madvise]' in mode


def environment(
  env: Mapping[str, str], thp_mode: str = THP_MODE, libc: tuple[str, str] | None = None
) -> dict[str, str] | None:
  """`env` with the tunable added, or None where it is set, switched off or unsupported."""
  tunables = env.get('GLIBC_TUNABLES', '')
  if env.get(SWITCH) in ('0', '1') or TUNABLE in tunables or not supported(thp_mode, libc):
    return None
  new = dict(env)
  new['GLIBC_TUNABLES'] = f'{tunables}:{TUNABLE}=1' if tunables else f'{TUNABLE}=1'
  new[SWITCH] = '1'
  return new


def active(env: Mapping[str, str] = os.environ) -> bool:
  """Whether this process started with malloc's huge pages on (the tunable at 1, and a
  glibc and kernel that apply it)."""
  return f'{TUNABLE}=1' in env.get('GLIBC_TUNABLES', '').split(':') and supported()


def command(argv: list[str], orig_argv: list[str]) -> list[str] | None:
  """The interpreter's arguments that rerun this command (`orig_argv[1:]`), or None where
  it is not a plain `python [options] FILE ...` or `python [options] -m MODULE ...` (run
  from stdin, `-c`, or inside another program such as IPython's `%run`)."""
  args = argv[1:]
  head = orig_argv[: len(orig_argv) - len(args)]
  if len(head) < 2 or orig_argv[len(head) :] != args or '-c' in head or head[1:2] == ['-']:
    return None
  script = head[-1] == argv[0]
  module = len(head) >= 3 and head[-2] == '-m'
  return orig_argv[1:] if script or module else None


def use_huge_pages() -> None:
  """Re-executes this command (`command`) with huge pages on, or returns where
  `environment` leaves it as it is or `command` finds no command line to rerun. Call it
  first in a command's `__main__`."""
  env = environment(os.environ)
  args = command(sys.argv, sys.orig_argv)
  if env is not None and args is not None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *args], env)
