"""Host memory: glibc's malloc tuned for XLA:CPU's step buffers, before a command starts.

XLA:CPU mallocs each step's buffers and frees them after it; glibc maps blocks above its
mmap threshold (at most 32 MB) afresh every time, and the kernel zero-fills each 4 KB page
on first touch: 770,000 page faults per stage-1 step of the paper preset on a 2-core AMD
EPYC, 55,000 of the quick preset. With `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc 2.35
or newer) malloc asks for transparent huge pages (2 MB) instead, where the kernel offers
them (`madvise` or `always` in /sys/kernel/mm/transparent_hugepage/enabled). Measured
(BENCHMARKS.md, "huge pages"): the quick preset's training loop 1.08-1.27x per stage, the
paper preset's steps 1.07-1.37x, on that machine. `REFINE3D_HUGE_PAGES=0` (exactly) keeps
glibc's defaults, all of them.

`REFINE3D_KEEP_FREED_MEMORY=1` also makes glibc keep what it frees (`KEEP`: no mmap, no
trimming, one arena, so blocks of any size come from one heap that it never shrinks; it
needs glibc, not huge pages). It is meant for VMs whose virtio balloon reports free pages
to the hypervisor (free page reporting, as on this workplace's VMs; `reports_free_pages`),
and measured only there: memory freed in the guest goes back to the host, and touching it
again a second or more later is slow, in the guest's system time (a freed 850 MB block took
1.37-3.50 s to refill after pauses of 1-5 s, 54.5-335 ms after pauses of at most 0.5 s).
Measured on a 2-core AMD EPYC Zen 5 VM of that kind (BENCHMARKS.md, "the VM takes freed
memory back"): the paper preset's stage-1 steps took 1.40-1.58 s (one 2.29 s) once the heap
stopped growing (3-6 of the first 7 steps grew it, 5.4-7.3 s each), against steps
alternating between 1.43-1.74 and 2.01-3.33 s with huge pages alone; resident memory
5.7-7.8 GB against 2.2-3.0. But the README's quick run took 384 s, twice, against 311 and
314 s with huge pages alone, so it is off by default.

glibc reads its tunables once, when a process starts, so `tune_malloc` re-executes the
command with them before anything is allocated.
"""

import glob
import os
import platform
import sys
from typing import Mapping

TUNABLE = 'glibc.malloc.hugetlb'
SWITCH = 'REFINE3D_HUGE_PAGES'  # '0': glibc's defaults; '1': set by tune_malloc
KEEP = (
  'glibc.malloc.mmap_max=0',  # every block from the heap, none mapped on its own
  'glibc.malloc.trim_threshold=68719476736',  # never give the heap's top back (64 GiB)
  'glibc.malloc.arena_max=1',  # one heap: other arenas map blocks above 64 MB anyway
)
KEEP_SWITCH = 'REFINE3D_KEEP_FREED_MEMORY'  # '1': add KEEP
THP_MODE = '/sys/kernel/mm/transparent_hugepage/enabled'
VIRTIO = '/sys/bus/virtio/devices'
BALLOON = '0x0005'  # virtio device id of a memory balloon
F_REPORTING = 5  # VIRTIO_BALLOON_F_REPORTING: the guest reports its free pages


def glibc_version(libc: tuple[str, str] | None = None) -> tuple[int, ...] | None:
  """(major, minor) of glibc on Linux (`libc`: `platform.libc_ver()`'s answer), or None
  (another OS or C library, or a version it cannot read)."""
  if not sys.platform.startswith('linux'):
    return None
  lib, version = libc or platform.libc_ver()
  try:
    return tuple(int(p) for p in version.split('.')[:2]) if lib == 'glibc' else None
  except ValueError:
    return None


def supported(thp_mode: str = THP_MODE, libc: tuple[str, str] | None = None) -> bool:
  """Linux, glibc >= 2.35 (`libc`: `platform.libc_ver()`'s answer), and the kernel's
  transparent huge pages not `never`."""
  version = glibc_version(libc)
  if version is None or version < (2, 35):
    return False
  try:
    with open(thp_mode) as f:
      mode = f.read()
  except OSError:
    return False
  return '[always]' in mode or '[madvise]' in mode


def reports_free_pages(virtio: str = VIRTIO) -> bool:
  """Whether a virtio balloon here reports free pages to the hypervisor (the feature bit
  the driver negotiated, in sysfs); `bench`'s header says so."""
  for device in sorted(glob.glob(os.path.join(virtio, '*'))):
    try:
      with open(os.path.join(device, 'device')) as f:
        if f.read().strip() != BALLOON:
          continue
      with open(os.path.join(device, 'features')) as f:
        bits = f.read().strip()
    except OSError:
      continue
    if bits[F_REPORTING : F_REPORTING + 1] == '1':
      return True
  return False


def _names(tunables: str) -> set[str]:
  return {t.split('=', 1)[0] for t in tunables.split(':') if t}


def environment(
  env: Mapping[str, str], thp_mode: str = THP_MODE, libc: tuple[str, str] | None = None
) -> dict[str, str] | None:
  """`env` with the tunables added, or None where it adds none: huge pages where
  `supported` and `GLIBC_TUNABLES` does not set them; `KEEP` where `KEEP_SWITCH` is '1',
  on Linux with glibc, and `GLIBC_TUNABLES` sets none of KEEP's (they work together).
  None where `SWITCH` is set ('0': glibc's defaults, all of them; '1': done already)."""
  tunables = env.get('GLIBC_TUNABLES', '')
  names = _names(tunables)
  if env.get(SWITCH) in ('0', '1'):
    return None
  added = []
  if TUNABLE not in names and supported(thp_mode, libc):
    added.append(f'{TUNABLE}=1')
  keep = env.get(KEEP_SWITCH) == '1' and glibc_version(libc) is not None
  if keep and not names & _names(':'.join(KEEP)):
    added += KEEP
  if not added:
    return None
  new = dict(env)
  new['GLIBC_TUNABLES'] = ':'.join([tunables, *added] if tunables else added)
  new[SWITCH] = '1'
  return new


def active(env: Mapping[str, str] = os.environ) -> bool:
  """Whether this process started with malloc's huge pages on (the tunable at 1, and a
  glibc and kernel that apply it)."""
  return f'{TUNABLE}=1' in env.get('GLIBC_TUNABLES', '').split(':') and supported()


def keeps_freed_memory(env: Mapping[str, str] = os.environ) -> bool:
  """Whether this process started with `KEEP`'s tunables, all of them."""
  return set(KEEP) <= set(env.get('GLIBC_TUNABLES', '').split(':'))


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


def tune_malloc() -> None:
  """Re-executes this command (`command`) with `environment`'s tunables, or returns where
  it adds none or `command` finds no command line to rerun. Call it first in a command's
  `__main__`."""
  env = environment(os.environ)
  args = command(sys.argv, sys.orig_argv)
  if env is not None and args is not None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *args], env)
