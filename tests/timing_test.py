"""timing: warm-up calls until the process's peak memory stops growing; untimed calls."""

import types

import jax.numpy as jnp

from refine3d_jax import timing


def test_warm_up_calls_until_two_calls_leave_the_peak_rss_unchanged(monkeypatch):
  peak = {'kb': 1000}
  monkeypatch.setattr(
    timing.resource, 'getrusage', lambda who: types.SimpleNamespace(ru_maxrss=peak['kb'])
  )
  calls = []

  def step(grows):
    calls.append(1)
    if len(calls) in grows:  # the heap grows at these calls
      peak['kb'] += 700_000
    return jnp.zeros(())

  assert timing.warm_up(lambda: step({1, 2, 3})) == 5 and len(calls) == 5
  calls.clear()
  assert timing.warm_up(lambda: step(set())) == 2
  calls.clear()
  # a call that does not grow it, then growth again: two in a row must settle
  assert timing.warm_up(lambda: step({1, 3, 4})) == 6
  calls.clear()
  assert timing.warm_up(lambda: step(set(range(99))), limit=5) == 5 and len(calls) == 5


def test_median_time_makes_one_untimed_call_unless_warmed_up_already():
  calls = []
  step = lambda: calls.append(1) or jnp.zeros(())
  assert timing.median_time(step, 3) >= 0 and len(calls) == 4
  calls.clear()
  assert timing.median_time(step, 3, warm=False) >= 0 and len(calls) == 3


def test_median_time_makes_warm_untimed_calls_within_a_quarter_of_the_budget(monkeypatch):
  calls = []
  step = lambda: calls.append(1) or jnp.zeros(())
  assert timing.median_time(step, 2, warm=3) >= 0 and len(calls) == 5
  clock = iter(range(0, 1000, 10))  # every reading 10 s later: one warm call in 20 s
  monkeypatch.setattr(timing.time, 'perf_counter', lambda: next(clock))
  calls.clear()
  assert timing.median_time(step, 5, budget_s=80.0, warm=3) == 10 and len(calls) == 6
