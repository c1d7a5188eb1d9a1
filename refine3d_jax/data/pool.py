"""Order-preserving parallel map for dataset builders (numpy-only work per item)."""

import concurrent.futures
import multiprocessing
import os
import sys
from typing import Any, Callable, Iterable, Iterator

# Below this many items a process pool costs more (start-up, imports) than it saves.
MIN_PARALLEL = 200


def ordered_map(
  fn: Callable[..., Any], *iterables: Iterable, num_items: int, chunksize: int = 16
) -> Iterator[Any]:
  """`map(fn, *iterables)` in order, over all CPU cores when `num_items` is large, with
  workers started by `start_method()`."""
  if num_items < MIN_PARALLEL or (os.cpu_count() or 1) == 1:
    yield from map(fn, *iterables)
    return
  ctx = multiprocessing.get_context(start_method())
  with concurrent.futures.ProcessPoolExecutor(os.cpu_count(), mp_context=ctx) as pool:
    yield from pool.map(fn, *iterables, chunksize=chunksize)


def start_method() -> str:
  """fork where it exists (numpy-only work, and the caller's script needs no `__main__`
  guard), except in a process that has imported JAX (main.py builds the synthetic set on
  first use): fork copies only the calling thread, so a lock one of JAX's threads holds
  would stay held in the child forever; forkserver starts clean workers (`fn` must then be
  importable, as both builders' are)."""
  methods = multiprocessing.get_all_start_methods()
  if 'jax' in sys.modules and 'forkserver' in methods:
    return 'forkserver'
  return 'fork' if 'fork' in methods else 'spawn'
