"""Tests of refine3d_jax.parallel. Multi-device and multi-process cases run in fresh
subprocesses (tests/parallel_worker.py): the CPU device count and jax.distributed must be
set before JAX starts."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from refine3d_jax import parallel
from tests import parallel_worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300  # seconds per subprocess: a hang fails the test instead of blocking CI (the
# two-process run alone takes about 100 s on the 2-core AMD kind, far more with other jobs)


def xla_flags(*extra):
  """conftest's flags (this process's XLA_FLAGS) without a device count, then `extra`."""
  own = os.environ.get('XLA_FLAGS', '').split()
  return ' '.join(
    [f for f in own if not f.startswith('--xla_force_host_platform_device_count')] + list(extra)
  )


def worker_env(devices):
  env = dict(
    os.environ,
    PYTHONPATH=ROOT,
    JAX_PLATFORMS='cpu',
    XLA_FLAGS=xla_flags(f'--xla_force_host_platform_device_count={devices}'),
  )
  for name in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID'):
    env.pop(name, None)
  return env


def result(output):
  lines = [l for l in output.splitlines() if l.startswith('RESULT ')]
  assert lines, output[-3000:]
  return json.loads(lines[-1][len('RESULT ') :])


def run_devices(*args, mode='devices'):
  proc = subprocess.run(
    [sys.executable, '-m', 'tests.parallel_worker', mode, *args],
    cwd=ROOT,
    env=worker_env(4),
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
    check=False,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return result(proc.stdout)


def check_sharding(r):
  assert r['images_spec'] == "P('data',)"
  assert r['images_devices'] == 4 and r['images_shard_shape'] == [2, 2, 16, 16, 3]
  assert r['probs_sharded'] and r['probs_devices'] == 4
  assert r['params_replicated']
  assert r['error'] and 'per-host batch of 6' in r['error'] and 'multiple of 4' in r['error']


def test_four_devices_match_one():
  """Tiny model, train-mode forward (BatchNorm over the global batch) and loss."""
  r = run_devices()
  check_sharding(r)
  assert r['loss_error'] < 1e-5 and r['probs_error'] < 1e-5 and r['stats_error'] < 1e-5, r


@pytest.mark.slow
def test_four_devices_match_one_with_gradients():
  r = run_devices('--grad')
  check_sharding(r)
  assert r['loss_error'] < 1e-5 and r['probs_error'] < 1e-5 and r['stats_error'] < 1e-5, r
  # f32 sums in another order through ~60 layers: ~2e-5 of the largest gradient measured
  assert r['grads_error'] < 1e-4 and r['grads_replicated'], r


@pytest.mark.slow
def test_bottleneck_kernel_gradient_gathers_rows_on_four_devices():
  """The refiner bottleneck's kernel gradient under the data mesh: every device sums the
  gathered rows' outer products (no all-reduce or all-gather of the [in, out] gradient), in
  the Dense layer alone (equal to one device's gradient) and in a stage-3 train step from
  train.make_train_steps (equal to the step without the gather)."""
  r = run_devices(mode='outer')
  assert r['grads_error'] < 1e-5, r
  assert r['dense_all_gathers'] > 0 and not r['dense_kernel_all_reduced'], r
  assert r['step_all_gathers'] > 0, r
  assert not r['step_fc_all_reduced'] and not r['step_fc_all_gathered'], r
  assert r['ungathered_fc_all_reduced'], r  # what the check would see without the gather
  # one step from the same state: the gradients' norm and the bottleneck's new kernels
  assert r['grad_norm_error'] < 1e-5 and r['fc_params_diff'] < 1e-5, r


def free_port():
  try:
    import portpicker  # pylint: disable=g-import-not-at-top

    return portpicker.pick_unused_port()
  except ImportError:
    with socket.socket() as s:
      s.bind(('127.0.0.1', 0))
      return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes(tiny_model):
  port = free_port()
  procs = [
    subprocess.Popen(
      [sys.executable, '-m', 'tests.parallel_worker', 'process', str(i), str(port)],
      cwd=ROOT,
      env=worker_env(2),
      text=True,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
    )
    for i in range(2)
  ]
  try:
    outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
  finally:
    for p in procs:  # on a timeout or any failure: no orphan stays behind
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  r0, r1 = (result(out) for out in outputs)
  assert (r0['process_index'], r1['process_index']) == (0, 1)
  for r in (r0, r1):
    assert r['process_count'] == 2 and r['device_count'] == 4 and r['local_device_count'] == 2
    assert r['global_shape'] == [parallel_worker.BATCH, parallel_worker.VIEWS, 16, 16, 3]
    assert r['probs_shape'] == [parallel_worker.BATCH, 32, 32, 32]
  # the single-process values on the full batch
  model, variables = tiny_model
  batch = parallel_worker.make_batch(model.image_size)
  loss, (probs, stats) = jax.jit(parallel_worker.make_loss(model))(
    variables['params'], variables['batch_stats'], batch
  )
  want = dict(
    images_sum=float(np.sum(batch['images'])),
    voxels_mean=float(np.mean(batch['voxels'])),
    loss=float(loss),
    probs_sum=float(np.sum(np.asarray(probs), dtype=np.float64)),
    stats_sum=float(sum(np.sum(np.asarray(s), dtype=np.float64) for s in jax.tree.leaves(stats))),
  )
  for key, value in want.items():
    assert r0[key] == r1[key], key  # both hosts see the same global result
    np.testing.assert_allclose(r0[key], value, rtol=1e-5, err_msg=key)
  # training: both hosts hold bit-identical parameters after the steps, equal to one
  # process's on the same global batch within tolerance: f32 sums in another order, which
  # Adam turns into up to +-lr (1e-3) on parameters whose gradient is ~0 (measured: 2 of
  # 95 leaf sums differ by 2.9e-5, the rest by < 1e-6)
  assert r0['params_digest'] == r1['params_digest']
  single = parallel_worker.param_sums(parallel_worker.train_steps(model, variables, batch))
  np.testing.assert_allclose(r0['param_sums'], single, rtol=1e-4, atol=1e-4)
  assert not np.allclose(r0['param_sums'], parallel_worker.param_sums(variables['params']))


def test_initialize_single_process_is_a_no_op(monkeypatch):
  for name in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID'):
    monkeypatch.delenv(name, raising=False)
  assert parallel.initialize() is False
  assert parallel.initialize(num_processes=1) is False
  monkeypatch.setenv('JAX_NUM_PROCESSES', '2')
  with pytest.raises(ValueError, match='coordinator address'):
    parallel.initialize()


def test_one_device_helpers():
  mesh = parallel.make_mesh()
  assert mesh.axis_names == ('data',) and mesh.size == jax.device_count()
  batch = dict(
    x=np.arange(12, dtype=np.float32).reshape(jax.device_count() * 6, -1)
    if jax.device_count() == 1
    else np.zeros((jax.device_count(), 2), np.float32),
    y=np.zeros(jax.device_count() * (6 if jax.device_count() == 1 else 1), bool),
  )
  sharded = parallel.shard_batch(batch, mesh)
  assert sharded['x'].sharding == parallel.batch_sharded(mesh)
  np.testing.assert_array_equal(parallel.to_host(sharded)['x'], batch['x'])
  tree = dict(w=np.ones((2, 3), np.float32), key=jax.random.key(3))
  rep = parallel.replicate(tree, mesh)
  assert rep['w'].sharding == parallel.replicated(mesh)
  assert jax.random.key_data(rep['key']).tolist() == jax.random.key_data(tree['key']).tolist()
  with pytest.raises(ValueError, match='same leading'):
    parallel.shard_batch(dict(a=np.zeros((2, 1)), b=np.zeros((3, 1))), mesh)


def test_cpu_devices_is_the_largest_divisor_of_the_batch_up_to_the_cores():
  assert [parallel.cpu_devices(b, 2) for b in (16, 4, 2, 5, 1)] == [2, 2, 2, 1, 1]
  assert [parallel.cpu_devices(b, 4) for b in (16, 6, 2, 9)] == [4, 3, 2, 3]
  cores = parallel.usable_cores()
  assert parallel.cpu_devices(16) == max(d for d in (1, 2, 4, 8, 16) if d <= cores)


def split_cpu(args, *flags):
  """use_cpu_cores(*args) in a fresh process with conftest's XLA flags (no device count)
  and `flags` -> (its return, jax.device_count())."""
  code = (
    'from refine3d_jax import parallel; import jax\n'
    f'n = parallel.use_cpu_cores(*{args!r})\n'
    'print("RESULT", n, jax.device_count())'
  )
  env = dict(worker_env(1), XLA_FLAGS=xla_flags(*flags))
  proc = subprocess.run(
    [sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return [int(v) for v in proc.stdout.split('RESULT')[-1].split()]


def test_use_cpu_cores_splits_the_cpu_unless_told_otherwise():
  assert split_cpu((6, 3)) == [3, 3]
  assert split_cpu((6, 1)) == [1, 1]
  # an XLA device count set before wins over the default, agrees with an explicit count
  assert split_cpu((6, 0), '--xla_force_host_platform_device_count=2') == [0, 2]
  assert split_cpu((6, 2), '--xla_force_host_platform_device_count=2') == [0, 2]


def test_use_cpu_cores_refuses_what_cannot_take_effect(monkeypatch):
  with pytest.raises(ValueError, match='--cpu_devices=4 does not divide'):
    parallel.use_cpu_cores(6, 4)
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
  with pytest.raises(ValueError, match='--cpu_devices=3 conflicts with XLA_FLAGS'):
    parallel.use_cpu_cores(6, 3)
  monkeypatch.setenv('XLA_FLAGS', '')
  monkeypatch.setenv('JAX_NUM_PROCESSES', '2')
  assert parallel.use_cpu_cores(6) == 0
  with pytest.raises(ValueError, match='is for one process; JAX_NUM_PROCESSES=2'):
    parallel.use_cpu_cores(6, 3)
  monkeypatch.delenv('JAX_NUM_PROCESSES')
  # main.py's --num_processes, one owner of the check; it wins over the variable, and
  # several processes refuse --cpu_devices even where XLA_FLAGS chose the same count
  monkeypatch.setenv('JAX_NUM_PROCESSES', '1')
  assert parallel.use_cpu_cores(6, num_processes=2) == 0
  with pytest.raises(ValueError, match='is for one process; --num_processes=2'):
    parallel.use_cpu_cores(6, 3, num_processes=2)
  monkeypatch.delenv('JAX_NUM_PROCESSES')
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
  with pytest.raises(ValueError, match='is for one process; --num_processes=2'):
    parallel.use_cpu_cores(6, 2, num_processes=2)
  monkeypatch.setenv('XLA_FLAGS', '')
  jax.devices()  # this process's JAX has started: the default leaves it alone
  assert parallel.use_cpu_cores(6) == 0
  with pytest.raises(ValueError, match='JAX has started already'):
    parallel.use_cpu_cores(6, 1)


def test_single_device_options_turn_off_ynnpack_fusions_on_a_multicore_cpu(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '--xla_backend_optimization_level=0')
  monkeypatch.setattr(parallel, 'usable_cores', lambda: 2)
  assert parallel.single_device_options('cpu') == {parallel.YNN_OPTION: ''}
  assert parallel.single_device_options('gpu') == {}
  monkeypatch.setenv('XLA_FLAGS', f'--{parallel.YNN_OPTION}=individual_convolution')
  assert parallel.single_device_options('cpu') == {}  # the user's setting stays
  monkeypatch.delenv('XLA_FLAGS')
  monkeypatch.setattr(parallel, 'usable_cores', lambda: 1)
  assert parallel.single_device_options('cpu') == {}


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='XLA:CPU option')
def test_single_device_options_compile_without_library_fusions(monkeypatch):
  from refine3d_jax.models.conv3d import conv3d

  monkeypatch.setattr(parallel, 'usable_cores', lambda: 2)
  x = jax.random.normal(jax.random.key(0), (1, 8, 8, 8, 16))
  k = jax.random.normal(jax.random.key(1), (3, 3, 3, 16, 16))
  fn = lambda x, k: conv3d(x, k, 'fold')
  default = jax.jit(fn).lower(x, k).compile()
  if '__ynn' not in default.as_text():  # the YNNPACK fusions' name
    pytest.skip('this XLA:CPU compiles the convolution without YNNPACK fusions anyway')
  options = parallel.single_device_options()
  compiled = jax.jit(fn, compiler_options=options).lower(x, k).compile()
  assert '__ynn' not in compiled.as_text()
  want = default(x, k)  # sums of 432 products of unit normals: float32 rounding differs
  np.testing.assert_allclose(compiled(x, k), want, rtol=0, atol=1e-5 * float(abs(want).max()))
