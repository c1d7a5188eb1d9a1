"""timing: warm-up calls until the process's peak memory stops growing."""

import types

import jax.numpy as jnp

from refine3d_jax import timing


def test_warm_up_calls_until_a_call_leaves_the_peak_rss_unchanged(monkeypatch):
  peak = {'kb': 1000}
  monkeypatch.setattr(
    timing.resource, 'getrusage', lambda who: types.SimpleNamespace(ru_maxrss=peak['kb'])
  )
  calls = []

  def step(grows):
    calls.append(1)
    if len(calls) <= grows:  # the heap grows over the first `grows` calls
      peak['kb'] += 700_000
    return jnp.zeros(())

  assert timing.warm_up(lambda: step(3)) == 4 and len(calls) == 4
  calls.clear()
  assert timing.warm_up(lambda: step(0)) == 1
  calls.clear()
  assert timing.warm_up(lambda: step(99), limit=5) == 5 and len(calls) == 5
