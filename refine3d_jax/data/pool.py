"""Order-preserving parallel map for dataset builders (numpy-only work per item)."""

import concurrent.futures
import multiprocessing
import os
from typing import Any, Callable, Iterable, Iterator

# Below this many items a process pool costs more (start-up, imports) than it saves.
MIN_PARALLEL = 200


def ordered_map(fn: Callable[..., Any], *iterables: Iterable, num_items: int,
                chunksize: int = 16) -> Iterator[Any]:
  """`map(fn, *iterables)` in order, over all CPU cores when `num_items` is large.

  Workers use fork where it exists (numpy-only work, so it is safe, and the caller's script
  needs no `__main__` guard).
  """
  if num_items < MIN_PARALLEL or (os.cpu_count() or 1) == 1:
    yield from map(fn, *iterables)
    return
  methods = multiprocessing.get_all_start_methods()
  ctx = multiprocessing.get_context('fork' if 'fork' in methods else 'spawn')
  with concurrent.futures.ProcessPoolExecutor(os.cpu_count(), mp_context=ctx) as pool:
    yield from pool.map(fn, *iterables, chunksize=chunksize)
