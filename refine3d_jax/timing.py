"""Timing helpers shared by the benchmark and the evaluation's cost table."""

import os
import resource
import time
from typing import Any, Callable

import jax
import numpy as np


def median_time(
  fn: Callable[[], Any], repeats: int, budget_s: float = 60.0, warm: int = 1
) -> float:
  """Median seconds of `repeats` calls of `fn` (blocked until ready), after `warm` untimed
  calls (True: one; False or 0: none, for a caller that warmed up already, `warm_up`),
  fewer once they have taken a quarter of `budget_s`; fewer timed calls (at least one)
  once those have taken `budget_s` (the paper model's 20-view batches take minutes per
  call on a CPU)."""
  spent, start = 0, time.perf_counter()
  while spent < int(warm) and time.perf_counter() - start < budget_s / 4:
    jax.block_until_ready(fn())
    spent += 1
  times = []
  while len(times) < repeats and (not times or sum(times) < budget_s):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def warm_up(fn: Callable[[], Any], limit: int = 10, settled: int = 2) -> int:
  """Calls `fn` (blocked until ready) until `settled` calls in a row leave the process's
  peak resident memory where it was, at most `limit` times; returns the calls made. Where
  malloc keeps what it frees (hostmem.KEEP) the heap grows over a program's first steps,
  each several times slower than the steps after it (and now and then a later one: the
  median of the timed steps is meant to absorb those)."""
  calls = unchanged = 0
  while calls < limit and unchanged < settled:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    jax.block_until_ready(fn())
    calls += 1
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss != before
    unchanged = 0 if grew else unchanged + 1
  return calls


def device_name(device: jax.Device) -> str:
  """'gpu: NVIDIA H100 80GB HBM3'; for CPUs the processor's model and core count (XLA
  names every CPU just 'cpu')."""
  if device.platform != 'cpu':
    return f'{device.platform}: {device.device_kind}'
  model = 'cpu'
  try:
    with open('/proc/cpuinfo') as f:
      model = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), model)
  except OSError:
    pass
  return f'cpu: {model}, {os.cpu_count()} cores'
