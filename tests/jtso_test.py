"""JTSO: labels, stage masks (frozen groups bit-identical), gradient routing, schedules."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import jtso as jtso_config
from refine3d_jax import jtso, losses, steps, train_state
from refine3d_jax.models import SUBTREES, create_model
from tests.testutil import perturb


@pytest.fixture(scope='module')
def setup():
  # The tiny model at 16^3: 3D convolutions and their gradients are slow on XLA:CPU, and
  # these tests exercise the optimizer logic, not the volume size.
  config = jtso_config.get_config('tiny')
  config.model.update(volume_size=16, refiner_widths=(4, 4))
  model = create_model(config.model)
  tx = jtso.optimizer(config)
  state = train_state.create_train_state(config, model, tx)
  state = state.replace(params=perturb(state.params))  # every layer matters
  rng = np.random.default_rng(0)
  batch = {
    'images': jnp.asarray(rng.standard_normal((2, 3, 16, 16, 3)), jnp.float32),
    'mask': jnp.ones((2, 3), bool),
    'voxels': jnp.asarray(rng.random((2, 16, 16, 16)) < 0.3),
  }
  return config, model, tx, state, batch


def changed(a, b) -> bool:
  return any(
    np.any(np.asarray(x) != np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )


def test_every_parameter_gets_a_group(setup):
  _, _, _, state, _ = setup
  labels = jtso.param_labels(state.params)
  assert set(jax.tree.leaves(labels)) == set(jtso.GROUPS)
  assert jax.tree.structure(labels) == jax.tree.structure(state.params)
  with pytest.raises(ValueError, match='do not match'):
    jtso.param_labels({**state.params, 'extra': {'w': jnp.zeros(2)}})


@pytest.mark.parametrize('stage_name', ['base', 'att', 'jtso', 'joint'])
def test_stage_updates_exactly_its_groups(setup, stage_name):
  config, model, tx, state, batch = setup
  stage = jtso.STAGES[stage_name]
  step = jax.jit(
    functools.partial(
      steps.train_step,
      model=model,
      tx=tx,
      stage=stage,
      lr_fn=lambda s: 1e-3,
      lr_scale=dict(config.train.lr_scale),
    )
  )
  # Two steps, so a frozen group would drift through Adam momentum if it were updated.
  new, metrics = step(state, batch)
  new, metrics = step(new, batch)
  assert int(new.step) == 2
  for name in SUBTREES:
    group = jtso.GROUP_OF[name]
    assert changed(new.params[name], state.params[name]) == (group in stage.trainable), name
  for group in jtso.GROUPS:
    assert changed(new.opt_state.inner_states[group], state.opt_state.inner_states[group]) == (
      group in stage.trainable
    ), group
  assert jax.tree.structure(new.opt_state) == jax.tree.structure(state.opt_state)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert ('loss_single' in metrics) == bool(stage.single)
  assert ('loss_multi' in metrics) == bool(stage.multi)


@pytest.mark.parametrize('single_views, packed', [(1, 0), (3, 0), (1, 6), (2, 6)])
def test_stage3_routes_each_loss_to_its_group(setup, single_views, packed):
  """With identity 'Adam' and learning rate 1, params move by exactly the routed gradient;
  the single-view loss is over each object's first `single_views` views. The multi-view
  gradients are those of encoding every view in that pass (the step reuses view 0's
  features of the single-view pass), packed or not."""
  config, model, _, state, batch = setup
  tx = optax.multi_transform({g: optax.identity() for g in jtso.GROUPS}, jtso.param_labels)
  state = state.replace(opt_state=tx.init(state.params))
  step = functools.partial(
    steps.train_step,
    model=model,
    tx=tx,
    stage=jtso.STAGES['jtso'],
    lr_fn=lambda s: 1.0,
    lr_scale={'base': 1.0, 'att': 1.0, 'ref': 1.0},
    single_views=single_views,
    packed=packed,
  )
  new, _ = jax.jit(step)(state, batch)
  moved = jax.tree.map(lambda a, b: a - b, state.params, new.params)

  def loss(params, images, mask, voxels):
    return steps.loss_fn(params, state.batch_stats, model, images, mask, voxels)[0]

  grad = jax.jit(jax.grad(loss))
  b, k = batch['images'].shape[0], single_views
  singles = batch['images'][:, :k].reshape((b * k, 1) + batch['images'].shape[2:])
  g_single = grad(
    state.params, singles, jnp.ones((b * k, 1), bool), jnp.repeat(batch['voxels'], k, axis=0)
  )
  g_multi = grad(state.params, batch['images'], batch['mask'], batch['voxels'])
  close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6)
  jax.tree.map(close, moved['encoder'], g_single['encoder'])
  jax.tree.map(close, moved['decoder'], g_single['decoder'])
  jax.tree.map(close, moved['attention'], g_multi['attention'])
  jax.tree.map(
    close,
    moved['refiner'],
    jax.tree.map(lambda a, b: (a + b) / 2, g_single['refiner'], g_multi['refiner']),
  )
  # The two losses really differ for the shared groups (else the test proves nothing).
  assert changed(g_single['decoder'], g_multi['decoder'])
  assert changed(g_single['attention'], jax.tree.map(jnp.zeros_like, g_single['attention']))


@pytest.mark.parametrize('stage_name', ['att', 'jtso', 'joint'])
def test_only_stage3_multi_view_pass_takes_view_0_from_the_single_view_pass(
  setup, stage_name, monkeypatch
):
  config, model, tx, state, batch = setup
  given = []
  forward = steps._forward
  monkeypatch.setattr(
    steps, '_forward', lambda m, *a: given.append(a[-1] is not None) or forward(m, *a)
  )
  stage = jtso.STAGES[stage_name]
  steps.train_step(
    state,
    batch,
    model=model,
    tx=tx,
    stage=stage,
    lr_fn=lambda s: 1e-3,
    lr_scale=dict(config.train.lr_scale),
  )
  assert given == ([False, True] if stage_name == 'jtso' else [False])


def test_refiner_gradient_comes_from_the_refined_term_only(setup):
  _, model, _, state, batch = setup

  def coarse_only(params):
    out = model.apply(
      {'params': params, 'batch_stats': state.batch_stats},
      batch['images'],
      batch['mask'],
      train=True,
      mutable=['batch_stats'],
    )[0]
    return losses.voxel_bce(out['coarse_logits'], batch['voxels'])

  g = jax.jit(jax.grad(coarse_only))(state.params)
  assert not changed(g['refiner'], jax.tree.map(jnp.zeros_like, g['refiner']))


def test_schedules():
  config = jtso_config.get_config('tiny')
  config.train.update(k1_epochs=1.0, k2_epochs=2.5)
  plan = jtso.schedule(config, steps_per_epoch=10)
  assert plan == [(0, 'base'), (10, 'att'), (25, 'jtso')]
  assert [jtso.stage_at(s, plan).name for s in (0, 9, 10, 24, 25, 1000)] == [
    'base',
    'base',
    'att',
    'att',
    'jtso',
    'jtso',
  ]
  config.train.schedule = 'attsets'
  assert jtso.stage_at(1000, jtso.schedule(config, 10)).name == 'att'
  config.train.schedule = 'end_to_end'
  assert jtso.stage_at(0, jtso.schedule(config, 10)).trainable == frozenset(jtso.GROUPS)
  config.train.schedule = 'jtso_joint'
  plan = jtso.schedule(config, 10)
  assert plan == [(0, 'base'), (10, 'att'), (25, 'joint')]
  assert jtso.stage_at(25, plan).multi == jtso.GROUPS


def test_learning_rate_decay():
  config = jtso_config.get_config('paper')
  lr = jtso.learning_rate_fn(config, steps_per_epoch=100)
  assert float(lr(0)) == pytest.approx(1e-3)
  assert float(lr(150 * 100 - 1)) == pytest.approx(1e-3)
  assert float(lr(150 * 100 + 1)) == pytest.approx(5e-4)


def test_bfloat16_mixed_precision_step(setup):
  """model.dtype='bfloat16': bf16 compute, float32 parameters and optimizer state, a
  finite loss that tracks the float32 one, and every stage's step runs."""
  config, f32_model, _, state, batch = setup
  config = config.copy_and_resolve_references()
  config.model.dtype = 'bfloat16'
  model = create_model(config.model)
  tx = jtso.optimizer(config)
  outputs = model.apply(
    {'params': state.params, 'batch_stats': state.batch_stats}, batch['images'], batch['mask']
  )
  # float32 outputs of a bf16 computation: every logit is a bfloat16 number
  logits = outputs['coarse_logits']
  assert logits.dtype == jnp.float32
  np.testing.assert_array_equal(logits, logits.astype(jnp.bfloat16).astype(jnp.float32))
  f32_loss, _ = steps.loss_fn(
    state.params, state.batch_stats, f32_model, batch['images'], batch['mask'], batch['voxels']
  )
  for stage_name in ('base', 'att', 'jtso'):
    step = jax.jit(
      functools.partial(
        steps.train_step,
        model=model,
        tx=tx,
        stage=jtso.STAGES[stage_name],
        lr_fn=lambda s: 1e-3,
        lr_scale=dict(config.train.lr_scale),
      )
    )
    new, metrics = step(state, batch)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(new.params)), stage_name
    assert all(
      x.dtype == y.dtype
      for x, y in zip(jax.tree.leaves(new.opt_state), jax.tree.leaves(state.opt_state))
    )
    assert all(np.isfinite(float(v)) for v in metrics.values()), (stage_name, metrics)
  # the stage-3 step's multi-view loss is that of `state`, as f32_loss
  np.testing.assert_allclose(float(metrics['loss_multi']), float(f32_loss), rtol=0.05)
