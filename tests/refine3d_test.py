"""Whole-model properties: shapes, ranges, permutation invariance, padding, subtrees.

Every forward pass uses a batch of 2 objects with 1, 3 or 24 views, so the jitted model
compiles three times for the whole file.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import jtso
from refine3d_jax import summary
from refine3d_jax.models import SUBTREES, Refine3DNet, create_model

VOLUME = (32, 32, 32)


@pytest.fixture(scope='module')
def forward(tiny_model):
  model, variables = tiny_model
  return jax.jit(lambda images, mask: model.apply(variables, images, mask))


def views(n, batch=2, size=16, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, n, size, size, 3))


def all_real(n, batch=2):
  return jnp.ones((batch, n), bool)


@pytest.mark.parametrize('num_views', [1, 3, 24])
def test_output_shapes_and_ranges(forward, num_views):
  out = forward(views(num_views), all_real(num_views))
  assert set(out) == {'coarse_logits', 'refined_logits', 'coarse', 'refined'}
  for name, x in out.items():
    assert x.shape == (2, *VOLUME), name
    assert x.dtype == jnp.float32, name
    assert np.isfinite(np.asarray(x)).all(), name
  for name in ('coarse', 'refined'):
    assert 0 <= out[name].min() and out[name].max() <= 1, name
  # The refiner does something once trained (here: perturbed parameters).
  assert np.abs(out['refined'] - out['coarse']).max() > 1e-4


def test_permutation_invariance(forward):
  """Random permutations, a different one per object, for 3 and 24 views."""
  rng = np.random.default_rng(0)
  for trial in range(6):
    n = (3, 24)[trial % 2]
    images = views(n, seed=trial)
    perms = [rng.permutation(n) for _ in range(2)]
    assert not all((p == np.arange(n)).all() for p in perms)
    shuffled = jnp.stack([images[i, p] for i, p in enumerate(perms)])
    a, b = forward(images, all_real(n)), forward(shuffled, all_real(n))
    for name in ('coarse', 'refined'):
      np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=f'{n} views {perms}')


def test_views_matter(forward):
  """Guards the invariance tests: different views must give a different output."""
  a = forward(views(3, seed=1), all_real(3))
  b = forward(views(3, seed=2), all_real(3))
  assert np.abs(a['coarse'] - b['coarse']).max() > 1e-3


def test_padding_mask(forward):
  """3 real views padded with 21 garbage views == the 3 views alone."""
  real = views(3, seed=3)
  padded = jnp.concatenate([real, 10 * views(21, seed=4)], axis=1)
  mask = jnp.zeros((2, 24), bool).at[:, :3].set(True)
  alone = forward(real, all_real(3))
  masked = forward(padded, mask)
  unmasked = forward(padded, all_real(24))
  for name in ('coarse', 'refined'):
    np.testing.assert_allclose(masked[name], alone[name], atol=1e-5)
    assert np.abs(unmasked[name] - alone[name]).max() > 1e-3  # the padding is not inert


def test_mixed_view_counts_in_one_batch(forward):
  """Object 0 has 3 real views, object 1 has 24: each as if it were alone."""
  a, b = views(3, seed=5), views(24, seed=6)
  batch = jnp.concatenate([jnp.concatenate([a[:1], b[1:, 3:]], axis=1), b[1:]])
  mask = jnp.array([[True] * 3 + [False] * 21, [True] * 24])
  both = forward(batch, mask)
  np.testing.assert_allclose(both['refined'][0], forward(a, all_real(3))['refined'][0], atol=1e-5)
  np.testing.assert_allclose(both['refined'][1], forward(b, all_real(24))['refined'][1], atol=1e-5)


def test_encode_once_then_reconstruct_from_the_first_n(tiny_model, forward):
  """encode + reconstruct with views past n masked == the model on the first n views: the
  nesting that lets evaluation encode 24 views once for every view count."""
  model, variables = tiny_model
  images = views(24, seed=7)
  features = jax.jit(lambda x: model.apply(variables, x, method=model.encode))(images)
  assert features.shape == (2, 24, model.latent_dim)
  rebuild = jax.jit(lambda f, m: model.apply(variables, f, m, method=model.reconstruct))
  for n in (1, 3, 24):
    nested = rebuild(features, jnp.broadcast_to(jnp.arange(24) < n, (2, 24)))
    alone = forward(images[:, :n], all_real(n))
    for name in ('coarse', 'refined'):
      np.testing.assert_allclose(nested[name], alone[name], atol=1e-5, err_msg=f'{n} views')


def test_mask_defaults_to_all_views(tiny_model, forward):
  model, variables = tiny_model
  images = views(3)
  default = jax.jit(lambda x: model.apply(variables, x))(images)
  np.testing.assert_allclose(default['refined'], forward(images, all_real(3))['refined'], atol=1e-6)


def test_subtrees_and_batch_stats(tiny_model):
  _, variables = tiny_model
  assert SUBTREES == ('encoder', 'attention', 'decoder', 'refiner')
  assert set(variables['params']) == set(SUBTREES)
  assert set(variables['batch_stats']) == {'refiner'}


def test_train_mode_updates_batch_stats(tiny_model):
  model, variables = tiny_model
  train = jax.jit(lambda x: model.apply(variables, x, train=True, mutable=['batch_stats']))
  out, updates = train(views(3))
  before = jax.tree.leaves(variables['batch_stats'])
  after = jax.tree.leaves(updates['batch_stats'])
  assert len(before) == len(after) > 0
  assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
  assert out['refined'].shape == (2, *VOLUME)


def test_untrained_refiner_and_fusion_are_identities(tiny_init, forward):
  """At init the refiner returns the coarse volume and the fusion is the mean."""
  model, variables = tiny_init
  run = jax.jit(lambda x: model.apply(variables, x))
  out = run(views(3))
  np.testing.assert_array_equal(out['refined_logits'], out['coarse_logits'])
  features = jax.random.normal(jax.random.key(0), (2, 3, 16))
  fused = model.apply(variables, features, all_real(3), method=lambda m, f, k: m.attention(f, k))
  np.testing.assert_allclose(fused, features.mean(axis=1), atol=1e-6)


def test_attsets_fusion_builds():
  config = jtso.get_config('tiny')
  config.model.fusion = 'attsets'
  model = create_model(config.model)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 2, 16, 16, 3)))
  assert set(shapes['params']) == set(SUBTREES)
  assert set(shapes['params']['attention']) == {'scores'}


def test_wrong_input_shapes_raise(tiny_model):
  model, variables = tiny_model
  with pytest.raises(ValueError, match=r'model.image_size = 16.*\(1, 2, 20, 20, 3\)'):
    model.apply(variables, jnp.zeros((1, 2, 20, 20, 3)))
  with pytest.raises(ValueError, match='mask must be'):
    model.apply(variables, views(2), jnp.ones((2, 3), bool))


def test_mean_fusion_is_the_plain_mean_with_one_unused_zero():
  config = jtso.get_config('tiny')
  config.model.fusion = 'mean'
  model = create_model(config.model)
  images = jax.random.uniform(jax.random.key(0), (2, 3, 16, 16, 3))
  variables = model.init(jax.random.key(1), images)
  assert summary.count_params(variables['params']['attention']) == 1
  refined = lambda p: model.apply({**variables, 'params': p}, images)['refined_logits']
  grads = jax.grad(lambda p: refined(p).sum())(variables['params'])
  np.testing.assert_array_equal(grads['attention']['unused'], [0.0])
  mask = jnp.array([[True, True, False], [True, False, False]])
  features = model.apply(variables, images.reshape(6, 16, 16, 3), method=lambda m, x: m.encoder(x))
  fused = model.apply(
    variables, features.reshape(2, 3, -1), mask, method=lambda m, x, k: m.attention(x, k)
  )
  np.testing.assert_allclose(fused[0], features.reshape(2, 3, -1)[0, :2].mean(0), rtol=1e-6)
  np.testing.assert_allclose(fused[1], features.reshape(2, 3, -1)[1, 0], rtol=1e-6)


@pytest.mark.parametrize('fusion', ['self_attention', 'attsets', 'mean'])
def test_packed_encoding_equals_every_slot_encoded(tiny_model, fusion):
  """packed=P (pairs of objects holding P real views, anywhere in their slots, garbage in
  the padding) gives the outputs and the gradients of encoding every slot, whichever the
  fusion."""
  model, variables = tiny_model
  if fusion != 'self_attention':
    config = jtso.get_config('tiny')
    config.model.fusion = fusion
    model = create_model(config.model)
    variables = model.init(jax.random.key(1), views(1, batch=1))
  mask = jnp.array(
    [[True, False, False], [True, True, True], [False, True, True], [True, False, True]]
  )
  images = views(3, batch=4, seed=8) * jnp.where(mask, 1.0, 10.0)[..., None, None, None]

  def loss(params, packed):
    out = model.apply({**variables, 'params': params}, images, mask, packed=packed)
    return (out['refined'] ** 2).sum(), out

  (full, full_out), full_grad = jax.jit(jax.value_and_grad(lambda p: loss(p, 0), has_aux=True))(
    variables['params']
  )
  (packed, packed_out), packed_grad = jax.jit(
    jax.value_and_grad(lambda p: loss(p, 4), has_aux=True)
  )(variables['params'])
  for name in ('coarse', 'refined'):
    np.testing.assert_allclose(packed_out[name], full_out[name], atol=1e-5)
  np.testing.assert_allclose(packed, full, rtol=1e-5)
  scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(full_grad))
  for a, b in zip(jax.tree.leaves(packed_grad), jax.tree.leaves(full_grad)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(packed_grad['encoder']))
  with pytest.raises(ValueError, match='even batch'):
    model.apply(variables, images[:3], mask[:3], packed=4)


def test_given_first_view_features_equal_encoding_every_view(tiny_model):
  """`first` (view 0's features from elsewhere) fills slot 0, and the other slots hold
  what encoding every view gives: packed (pairs holding 4 real views, view 0 always
  real) or not, and with one view."""
  model, variables = tiny_model
  mask = jnp.array(
    [[True, True, True], [True, False, False], [True, True, False]] + [[True, True, False]]
  )
  images = views(3, batch=4, seed=3) * jnp.where(mask, 1.0, 10.0)[..., None, None, None]
  feats = lambda *a: model.apply(variables, *a, method=Refine3DNet.features)
  full, packed = feats(images, mask), feats(images, mask, 4)
  first = full[:, 0] + 1.0  # not the encoder's: slot 0 must be this, as given
  # the other slots are encoded in batches of other shapes: float32 sums in another order
  # (2.4e-6 apart on values of 1-3 on an AVX2 CPU)
  close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
  close(feats(images, mask, 0, first), full.at[:, 0].set(first))
  close(feats(images, mask, 4, first), packed.at[:, 0].set(first))
  lone = mask & (jnp.arange(3) == 0)  # one real view of three: packed = 2 encodes none
  close(feats(images, lone, 2, first), feats(images, lone, 2).at[:, 0].set(first))
  for p in (0, 2):  # one view per object: nothing left to encode
    np.testing.assert_allclose(feats(images[:, :1], mask[:, :1], p, first), first[:, None])
  with pytest.raises(ValueError, match='first must be'):
    feats(images, mask, 0, first[:2])
