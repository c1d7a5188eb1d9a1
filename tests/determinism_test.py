"""The determinism check: two runs on CPU are bit-identical, and a difference is found."""

import numpy as np
import pytest

from refine3d_jax import determinism
from tests.testutil import small_config


@pytest.mark.slow  # 90 s on 2 cores; the resume tests compare two runs in the default suite
def test_two_runs_on_cpu_are_bit_identical(tiny_data_dir):
  result = determinism.check(small_config(tiny_data_dir), batch=2, views=2, steps=2)
  assert set(result) == {'base', 'att', 'jtso', 'joint', 'eval'}
  for name, r in result.items():
    assert r['identical'] and r['differing'] == 0 and r['max_abs_diff'] == 0, name
    assert r['arrays'] >= 7, name
  table = determinism.format_table(result, 'cpu')
  assert '| jtso | yes | 0 of' in table


def test_a_difference_is_reported():
  a = {'w': np.array([1.0, 2.0], np.float32), 'b': np.zeros(3, np.float32)}
  b = {'w': np.array([1.0, 2.5], np.float32), 'b': np.zeros(3, np.float32)}
  assert determinism.compare(a, b) == dict(identical=False, arrays=2, differing=1, max_abs_diff=0.5)
  assert determinism.compare(a, a)['identical']
  nan = {'w': np.array([np.nan]), 'b': np.zeros(1)}
  assert determinism.compare(nan, nan)['identical']  # bitwise, so NaN equals itself
