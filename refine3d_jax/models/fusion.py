"""View fusion: a set of per-view vectors ``[B, V, D]`` -> one vector ``[B, D]``.

Both modules are permutation invariant over views (no positional encoding; pooling is a
sum over views) and take a padding mask ``[B, V]`` (True = real view) so one batch can
mix view counts: padded views are never attended to and never pooled.

``SelfAttentionFusion`` (the paper's design, ``model.fusion = 'self_attention'``): pre-norm
transformer blocks (LayerNorm -> multi-head self-attention -> residual, LayerNorm -> MLP ->
residual) across the views, then a masked mean over views. The output projections of the
attention and of the MLP start at zero, so at initialisation the module is exactly the
mean of the input vectors. That is what JTSO's first stage wants: the base network trains
through an attention module that is frozen at its initial value and is then the identity
on a single view, and stage 2 starts from exactly the function stage 1 left.

``model.attention_block = 'plain'`` is the paper's text instead: multi-head self-attention
with its output projection W_O only (about half the parameters: 4.2M at D = 1024 against
8.4M), from default initialisers, so it is not the identity at the start.

``AttSetsFusion`` (``model.fusion = 'attsets'``, what the authors' public code uses): the
FC attention pooling of AttSets, per-feature softmax scores over views from one Dense
layer, output = sum of scores * features. The identity on a single view.

``MeanFusion`` (``model.fusion = 'mean'``): the plain masked mean, nothing learnt; the
baseline that shows what a learnt fusion adds.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of ``x [B, V, D]`` over the views where ``mask [B, V]`` is True -> ``[B, D]``."""
  weights = mask.astype(x.dtype)[..., None]
  count = jnp.maximum(weights.sum(axis=1), 1)
  return (x * weights).sum(axis=1) / count


class SelfAttentionBlock(nn.Module):
  """One pre-norm transformer block over views: ``[B, V, D] -> [B, V, D]``."""

  num_heads: int
  mlp_dim: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    dim = x.shape[-1]
    # Every query may look at every real key; padded queries compute values that are
    # never pooled, and no row is fully masked, so no NaN appears.
    attn_mask = nn.make_attention_mask(jnp.ones_like(mask), mask)
    y = nn.LayerNorm(dtype=self.dtype, name='norm1')(x)
    y = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads,
      dtype=self.dtype,
      out_kernel_init=nn.initializers.zeros,
      name='self_attention',
    )(y, y, mask=attn_mask)
    x = x + y
    y = nn.LayerNorm(dtype=self.dtype, name='norm2')(x)
    y = nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype, name='mlp_in')(y))
    y = nn.Dense(dim, dtype=self.dtype, kernel_init=nn.initializers.zeros, name='mlp_out')(y)
    return x + y


class PlainSelfAttention(nn.Module):
  """The paper's text: multi-head self-attention with its output projection W_O, nothing
  else (no LayerNorm, MLP or residual): ``[B, V, D] -> [B, V, D]``. Default initialisers
  (a zero W_O would make the fused vector 0)."""

  num_heads: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    attn_mask = nn.make_attention_mask(jnp.ones_like(mask), mask)
    return nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads, dtype=self.dtype, name='self_attention'
    )(x, x, mask=attn_mask)


BLOCKS = ('transformer', 'plain')


class SelfAttentionFusion(nn.Module):
  """``num_layers`` self-attention blocks across views, then a masked mean. ``block``:
  'transformer' (SelfAttentionBlock, ours) or 'plain' (PlainSelfAttention, the paper)."""

  num_heads: int = 8
  num_layers: int = 1
  mlp_dim: int = 2048
  dtype: jnp.dtype = jnp.float32
  block: str = 'transformer'

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    if self.block not in BLOCKS:
      raise ValueError(f'attention block must be one of {BLOCKS}, got {self.block!r}')
    for i in range(self.num_layers):
      if self.block == 'plain':
        x = PlainSelfAttention(self.num_heads, self.dtype, name=f'block{i + 1}')(x, mask)
      else:
        x = SelfAttentionBlock(self.num_heads, self.mlp_dim, self.dtype, name=f'block{i + 1}')(
          x, mask
        )
    return masked_mean(x, mask)


class MeanFusion(nn.Module):
  """The masked mean over views. Its one parameter, a single zero that the output never
  reads (so its gradient is 0 and Adam never moves it), keeps the `attention` subtree that
  JTSO routes present; one element rather than none because orbax refuses to save
  zero-size arrays."""

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    self.param('unused', nn.initializers.zeros, (1,))
    return masked_mean(x, mask)


class AttSetsFusion(nn.Module):
  """AttSets' FC attention pooling: ``sum_v softmax_v(Dense(x))_v * x_v``."""

  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    scores = nn.Dense(x.shape[-1], dtype=self.dtype, name='scores')(x)
    scores = jnp.where(mask[..., None], scores, -jnp.inf)
    weights = jax.nn.softmax(scores.astype(jnp.float32), axis=1).astype(x.dtype)
    return (weights * x).sum(axis=1)
