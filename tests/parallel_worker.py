"""Subprocess side of tests/parallel_test.py (a fresh JAX per process: the device count and
jax.distributed must be set up before JAX starts). Prints one line `RESULT <json>`.

  # with XLA_FLAGS=--xla_force_host_platform_device_count=4:
  python -m tests.parallel_worker devices [--grad]
  python -m tests.parallel_worker outer
  python -m tests.parallel_worker process ID PORT   # one of two processes on 127.0.0.1
"""

import json
import sys

import numpy as np

BATCH, VIEWS = 8, 2


def make_batch(image_size):
  """The global batch, the same in every process (and in the test process)."""
  rng = np.random.default_rng(0)
  mask = rng.random((BATCH, VIEWS)) < 0.7
  mask[:, 0] = True
  return dict(
    images=rng.standard_normal((BATCH, VIEWS, image_size, image_size, 3), dtype=np.float32),
    mask=mask,
    voxels=rng.random((BATCH, 32, 32, 32)) < 0.3,
  )


def make_loss(model):
  """loss(params, batch_stats, batch) -> (loss, (probs, new batch_stats)); train=True, so
  BatchNorm normalises over the whole global batch (the cross-device part)."""
  import optax  # pylint: disable=g-import-not-at-top

  def loss_fn(params, batch_stats, batch):
    out, updates = model.apply(
      {'params': params, 'batch_stats': batch_stats},
      batch['images'],
      batch['mask'],
      train=True,
      mutable=['batch_stats'],
    )
    loss = optax.sigmoid_binary_cross_entropy(
      out['refined_logits'], batch['voxels'].astype(np.float32)
    ).mean()
    return loss, (out['refined'], updates['batch_stats'])

  return loss_fn


def setup():
  """(model, variables) of the tiny preset, as tests/conftest.py's tiny_model makes them."""
  import jax  # pylint: disable=g-import-not-at-top

  jax.config.update('jax_default_matmul_precision', 'highest')
  from configs import jtso  # pylint: disable=g-import-not-at-top
  from refine3d_jax.models import create_model, init_variables  # pylint: disable=g-import-not-at-top
  from tests.testutil import perturb  # pylint: disable=g-import-not-at-top

  model = create_model(jtso.get_config('tiny').model)
  variables = init_variables(model, jax.random.key(0))
  return model, {**variables, 'params': perturb(variables['params'])}


def rel_error(a, b):
  """max |a - b| / max |b|: the error relative to the array's scale."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def devices(grad):
  """One device against four (batch split, variables replicated): loss, probabilities,
  BatchNorm statistics and, with `grad`, the gradients."""
  import jax  # pylint: disable=g-import-not-at-top
  from refine3d_jax import parallel  # pylint: disable=g-import-not-at-top

  assert jax.device_count() == 4, jax.devices()
  model, variables = setup()
  batch = make_batch(model.image_size)
  loss_fn = make_loss(model)
  step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True) if grad else loss_fn)
  out1 = step(variables['params'], variables['batch_stats'], batch)
  mesh = parallel.make_mesh()
  state = parallel.replicate(variables, mesh)
  sharded = parallel.shard_batch(batch, mesh)
  out4 = step(state['params'], state['batch_stats'], sharded)
  (loss1, (probs1, stats1)), (loss4, (probs4, stats4)) = (
    (out1[0], out4[0]) if grad else (out1, out4)
  )
  result = dict(
    loss=float(loss4),
    loss_error=rel_error(loss4, loss1),
    probs_error=rel_error(parallel.to_host(probs4), probs1),
    stats_error=max(
      rel_error(a, b) for a, b in zip(jax.tree.leaves(stats4), jax.tree.leaves(stats1))
    ),
    images_spec=str(sharded['images'].sharding.spec),
    images_devices=len(sharded['images'].sharding.device_set),
    images_shard_shape=list(sharded['images'].addressable_shards[0].data.shape),
    probs_sharded=probs4.sharding.is_equivalent_to(parallel.batch_sharded(mesh), 4),
    probs_devices=len(probs4.sharding.device_set),
    params_replicated=all(p.sharding.is_fully_replicated for p in jax.tree.leaves(state)),
  )
  if grad:
    grads1, grads4 = jax.tree.leaves(out1[1]), jax.tree.leaves(out4[1])
    # relative to the largest gradient: some leaves' gradients are ~0 (attention key
    # biases: softmax ignores them) and hold only rounding noise
    scale = max(np.max(np.abs(np.asarray(g))) for g in grads1)
    result['grads_error'] = max(
      float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(grads4, grads1)
    ) / float(scale)
    result['grads_replicated'] = all(g.sharding.is_fully_replicated for g in grads4)
  try:
    parallel.shard_batch({k: v[:6] for k, v in batch.items()}, mesh)
    result['error'] = None
  except ValueError as e:
    result['error'] = str(e)
  return result


def process(process_id, port):
  from refine3d_jax import parallel  # pylint: disable=g-import-not-at-top

  assert parallel.initialize(
    f'127.0.0.1:{port}', 2, process_id, f'127.0.0.1:{port}', initialization_timeout=60
  )
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  model, variables = setup()
  full = make_batch(model.image_size)
  half = BATCH // 2
  local = {k: v[process_id * half : (process_id + 1) * half] for k, v in full.items()}
  mesh = parallel.make_mesh()
  batch = parallel.shard_batch(local, mesh)
  state = parallel.replicate(variables, mesh)
  out = dict(
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    device_count=jax.device_count(),
    local_device_count=jax.local_device_count(),
    global_shape=list(batch['images'].shape),
  )
  out['images_sum'] = float(parallel.to_host(jax.jit(jnp.sum)(batch['images'])))
  out['voxels_mean'] = float(
    parallel.to_host(jax.jit(lambda v: jnp.mean(v.astype(jnp.float32)))(batch['voxels']))
  )
  loss, (probs, stats) = jax.jit(make_loss(model))(state['params'], state['batch_stats'], batch)
  out['loss'] = float(parallel.to_host(loss))
  out['stats_sum'] = float(
    sum(np.sum(s, dtype=np.float64) for s in jax.tree.leaves(parallel.to_host(stats)))
  )
  out['probs_sum'] = float(parallel.to_host(probs).astype(np.float64).sum())
  out['probs_shape'] = list(parallel.to_host(probs).shape)
  params = train_steps(model, variables, batch, mesh)
  out['param_sums'] = param_sums(params)
  out['params_digest'] = params_digest(params)
  return out


def outer():
  """The refiner bottleneck's kernel gradient on four devices: the Dense layer's
  (refiner.batch_outer_dot) under the data mesh against one device's; a stage-3 train step
  (tiny preset with a bottleneck, train.make_train_steps): whether it gathers the rows or
  all-reduces or all-gathers an [in, out] kernel gradient, and its parameters against the
  same step without the gather (refiner.GATHER_MAX_ROWS = 0)."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from configs import jtso as jtso_config  # pylint: disable=g-import-not-at-top
  from refine3d_jax import jtso, parallel, train, train_state  # pylint: disable=g-import-not-at-top
  from refine3d_jax.models import create_model, refiner  # pylint: disable=g-import-not-at-top

  jax.config.update('jax_default_matmul_precision', 'highest')
  mesh = parallel.make_mesh()
  rng = np.random.default_rng(0)
  data = dict(
    x=rng.standard_normal((BATCH, 24), np.float32), w=rng.standard_normal((BATCH, 16), np.float32)
  )
  dense = nn.Dense(16, dot_general=refiner.batch_outer_dot)
  params = dense.init(jax.random.key(0), data['x'])
  grad_fn = lambda: jax.jit(jax.grad(lambda p, x, w: jnp.sum(dense.apply(p, x) * w)))
  want = grad_fn()(params, data['x'], data['w'])
  sharded = parallel.shard_batch(data, mesh)
  args = (parallel.replicate(params, mesh), sharded['x'], sharded['w'])
  with jax.set_mesh(mesh):
    got = grad_fn()(*args)
    dense_hlo = grad_fn().lower(*args).compile().as_text()
  config = jtso_config.get_config('tiny')
  config.model.refiner_bottleneck = 12  # kernels [256, 12], [12, 256]: not a [BATCH, n] shape
  model = create_model(config.model)
  tx = jtso.optimizer(config)
  # host copies: the step donates its state, which must not consume the next one's arrays
  init = jax.tree.map(np.array, train_state.create_train_state(config, model, tx))
  batch = parallel.shard_batch(make_batch(model.image_size), mesh)
  fc = [init.params['refiner'][name]['kernel'].shape for name in ('fc1', 'fc2')]
  collective = lambda text, op, shapes: any(
    f'{op}(' in line and f'f32[{",".join(map(str, shape))}]' in line
    for line in text.splitlines()
    for shape in shapes
  )
  after, hlo = [], []
  for rows in (refiner.GATHER_MAX_ROWS, 0):
    refiner.GATHER_MAX_ROWS = rows
    jax.clear_caches()  # the step traces anew
    step = train.make_train_steps(config, model, tx, lambda s: 1e-3)['jtso']
    state = parallel.replicate(init, mesh)
    compiled = step.lower(state, batch, packed=0).compile()
    hlo.append(compiled.as_text())
    state, metrics = compiled(state, batch)
    after.append((parallel.to_host(state.params['refiner']), float(metrics['grad_norm'])))
  return dict(
    grads_error=max(rel_error(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want))),
    dense_all_gathers=dense_hlo.count('all-gather('),
    dense_kernel_all_reduced=collective(dense_hlo, 'all-reduce', [(24, 16)]),
    step_all_gathers=hlo[0].count('all-gather('),
    step_fc_all_reduced=collective(hlo[0], 'all-reduce', fc),
    step_fc_all_gathered=collective(hlo[0], 'all-gather', fc),
    ungathered_fc_all_reduced=collective(hlo[1], 'all-reduce', fc),
    grad_norm_error=rel_error(after[0][1], after[1][1]),
    fc_params_diff=max(
      float(np.max(np.abs(after[0][0][name]['kernel'] - after[1][0][name]['kernel'])))
      for name in ('fc1', 'fc2')
    ),
  )


TRAIN_STEPS = 2


def train_steps(model, variables, batch, mesh=None):
  """The parameters after TRAIN_STEPS JTSO stage-3 steps (both losses, Adam) on `batch`
  from `variables`, as host numpy arrays (replicated over `mesh` when given)."""
  import jax  # pylint: disable=g-import-not-at-top
  from configs import jtso as jtso_config  # pylint: disable=g-import-not-at-top
  from refine3d_jax import jtso, parallel, train, train_state  # pylint: disable=g-import-not-at-top

  config = jtso_config.get_config('tiny')
  tx = jtso.optimizer(config)
  # host copies: the step donates its state, which must not consume the caller's arrays
  variables = jax.tree.map(np.array, variables)
  state = train_state.create_train_state(config, model, tx)
  state = state.replace(
    params=variables['params'],
    batch_stats=variables['batch_stats'],
    opt_state=tx.init(variables['params']),
  )
  if mesh is not None:
    state = parallel.replicate(state, mesh)
  step = train.make_train_steps(config, model, tx, lambda s: 1e-3)['jtso']
  for _ in range(TRAIN_STEPS):
    state, _ = step(state, batch)
  return jax.tree.map(np.asarray, parallel.to_host(state.params))


def param_sums(params):
  """float64 sum of every parameter leaf, in tree order."""
  import jax  # pylint: disable=g-import-not-at-top

  return [float(np.sum(np.asarray(p), dtype=np.float64)) for p in jax.tree.leaves(params)]


def params_digest(params):
  """A hash of every parameter's bytes: equal only for bit-identical parameters."""
  import hashlib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  h = hashlib.sha256()
  for p in jax.tree.leaves(params):
    h.update(np.ascontiguousarray(p).tobytes())
  return h.hexdigest()


if __name__ == '__main__':
  if sys.argv[1] == 'devices':
    result = devices(grad='--grad' in sys.argv)
  elif sys.argv[1] == 'outer':
    result = outer()
  else:
    result = process(int(sys.argv[2]), int(sys.argv[3]))
  print('RESULT ' + json.dumps(result), flush=True)
