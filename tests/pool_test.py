"""The builders' parallel map: order kept, and no fork in a process that runs JAX."""

import jax  # noqa: F401  (the point: JAX is imported here)

from refine3d_jax.data import pool


def test_ordered_map_keeps_order_with_clean_workers_under_jax():
  assert pool.start_method() == 'forkserver'
  n = pool.MIN_PARALLEL
  assert list(pool.ordered_map(divmod, range(n), [7] * n, num_items=n)) == [
    divmod(i, 7) for i in range(n)
  ]
