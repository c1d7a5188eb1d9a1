"""Refine3DNet: views of one object, in any order and number -> 32^3 occupancy.

    images [B, V, H, W, 3] --encoder--> [B, V, D] --attention--> [B, D]
        --decoder--> coarse logits [B, S, S, S] --refiner--> refined logits [B, S, S, S]

The four parameter subtrees are named `encoder`, `attention`, `decoder`, `refiner`
(JTSO routes optimizers by these names). The `attention` subtree holds whichever fusion
`model.fusion` picks. Only the refiner has BatchNorm (collection `batch_stats`).
The output is permutation invariant over views, and padded views (mask False) have no
effect, so one batch can mix view counts. Each object needs at least one real view.
`packed=P` encodes only the real views where objects (2i, 2i + 1) hold P of them together
(the pipeline's data.paired_views): the same outputs for a fraction of the encoder's work.
`first=` takes each object's view-0 features from elsewhere (JTSO's stage 3 encodes view 0
in its single-view pass already) and encodes only the other views.
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from refine3d_jax import configlib
from refine3d_jax.models.decoder import Decoder
from refine3d_jax.models.encoder import Encoder
from refine3d_jax.models.fusion import AttSetsFusion, MeanFusion, SelfAttentionFusion
from refine3d_jax.models.refiner import Refiner

SUBTREES = ('encoder', 'attention', 'decoder', 'refiner')


class Refine3DNet(nn.Module):
  """The whole model; fields mirror `config.model` (see configs/jtso.py)."""

  image_size: int = 127
  encoder_widths: Sequence[int] = (96, 128, 256, 256, 256, 256)
  encoder_shortcuts: Sequence[bool] = (True, True, True, False, True, True)
  encoder_first_kernel: int = 7
  latent_dim: int = 1024
  fusion: str = 'self_attention'
  num_heads: int = 8
  attention_layers: int = 1
  attention_mlp_dim: int = 2048
  decoder_widths: Sequence[int] = (128, 128, 128, 64, 64, 32)
  decoder_base_size: int = 2
  decoder_head: str = 'conv'
  occupancy_prior: float = 0.0
  refiner_widths: Sequence[int] = (32, 64, 128)
  refiner_kernel: int = 4
  volume_size: int = 32
  leaky_slope: float = 0.2
  conv2d: str = 'auto'
  conv3d: str = 'auto'
  dtype: jnp.dtype = jnp.float32
  attention_block: str = 'transformer'
  decoder_shortcuts: str = 'identity'
  refiner_up_activation: str = 'leaky_relu'
  refiner_bottleneck: int = 0
  refiner_bn_momentum: float = 0.9

  def setup(self):
    self.encoder = Encoder(
      self.encoder_widths,
      self.encoder_shortcuts,
      self.latent_dim,
      self.encoder_first_kernel,
      self.leaky_slope,
      self.conv2d,
      self.dtype,
    )
    if self.fusion == 'self_attention':
      self.attention = SelfAttentionFusion(
        self.num_heads,
        self.attention_layers,
        self.attention_mlp_dim,
        self.dtype,
        self.attention_block,
      )
    elif self.fusion == 'attsets':
      self.attention = AttSetsFusion(self.dtype)
    elif self.fusion == 'mean':
      self.attention = MeanFusion()
    else:
      raise ValueError(f'unknown fusion {self.fusion!r}: use one of {configlib.FUSIONS}')
    self.decoder = Decoder(
      self.decoder_widths,
      self.decoder_base_size,
      self.volume_size,
      self.leaky_slope,
      self.decoder_head,
      self.occupancy_prior,
      self.conv3d,
      self.dtype,
      self.decoder_shortcuts,
    )
    self.refiner = Refiner(
      self.refiner_widths,
      self.refiner_kernel,
      self.leaky_slope,
      self.conv3d,
      self.dtype,
      self.refiner_up_activation,
      self.refiner_bottleneck,
      self.refiner_bn_momentum,
    )

  def __call__(
    self,
    images: jax.Array,
    mask: jax.Array | None = None,
    train: bool = False,
    packed: int = 0,
    first: jax.Array | None = None,
  ) -> dict[str, jax.Array]:
    """Reconstructs each object of the batch from its views.

    Args:
      images: `[B, V, H, W, 3]` normalised views, `H = W = image_size`.
      mask: `[B, V]` bool, True for real views; None means all views are real.
      train: BatchNorm mode (apply with `mutable=['batch_stats']` when True).
      packed: > 0: objects 2i and 2i + 1 hold exactly this many real views together,
        and only those are encoded (`encode_packed`); 0: every slot is encoded.
      first: `[B, latent_dim]`: each object's view-0 features, used as given (`features`).

    Returns:
      dict of float32 `[B, S, S, S]` arrays: `coarse_logits`, `refined_logits`, and their
      sigmoids `coarse` and `refined` (occupancy probabilities in [0, 1]).
    """
    b, v = images.shape[:2]
    if mask is None:
      mask = jnp.ones((b, v), bool)
    elif mask.shape != (b, v):
      raise ValueError(f'mask must be [batch, views] = {(b, v)}; got {mask.shape}')
    return self.reconstruct(self.features(images, mask, packed, first), mask, train)

  def features(
    self, images: jax.Array, mask: jax.Array, packed: int = 0, first: jax.Array | None = None
  ) -> jax.Array:
    """`__call__`'s `[B, V, latent_dim]` features: every slot encoded (`encode`), or the
    real views only (`packed`, `encode_packed`); with `first` (`[B, latent_dim]`, view 0
    being real, as the pipeline pads after the real views) slot 0 holds it and only the
    other views are encoded (`packed` - 2 of them per pair)."""
    if first is None:
      return self.encode_packed(images, mask, packed) if packed else self.encode(images)
    b, v = images.shape[:2]
    if first.shape != (b, self.latent_dim):
      raise ValueError(
        f'first must be [batch, latent_dim] = {(b, self.latent_dim)}; got {first.shape}'
      )
    if packed > 2:
      rest = self.encode_packed(images, mask.at[:, 0].set(False), packed - 2)[:, 1:]
    elif packed or v == 1:  # a pair's only real views are both objects' view 0
      rest = jnp.zeros((b, v - 1, self.latent_dim), first.dtype)
    else:
      rest = self.encode(images[:, 1:])
    return jnp.concatenate([first[:, None].astype(rest.dtype), rest], axis=1)

  def encode(self, images: jax.Array) -> jax.Array:
    """`[B, V, H, W, 3]` views -> `[B, V, latent_dim]` features, each view on its own (so
    an evaluation encodes the first 20 views once and fuses the first n of them)."""
    if images.ndim != 5 or images.shape[2:] != (self.image_size, self.image_size, 3):
      raise ValueError(
        f'images must be [batch, views, {self.image_size}, {self.image_size}, 3] '
        f'(model.image_size = {self.image_size}); got {images.shape}'
      )
    b, v = images.shape[:2]
    return self.encoder(images.reshape(b * v, *images.shape[2:])).reshape(b, v, -1)

  def encode_packed(self, images: jax.Array, mask: jax.Array, packed: int) -> jax.Array:
    """`encode` of the real views only, where objects 2i and 2i + 1 hold exactly `packed`
    real views together: `[B, V, ...]` -> `[B, V, latent_dim]`, zeros in padded slots
    (which the fusion ignores). Each pair's real views are gathered in slot order, so the
    work is `B / 2 * packed` views instead of `B * V` and stays within a pair (a batch
    sharded over devices in whole pairs needs no communication). A pair with more real
    views than `packed` would lose some: the pipeline guarantees the count
    (input_pipeline.check_pairs)."""
    b, v = images.shape[:2]
    if b % 2 or not 0 < packed <= 2 * v:
      raise ValueError(f'packed = {packed} needs an even batch and <= {2 * v}; got {b} x {v}')
    real = mask.reshape(b // 2, 2 * v).astype(bool)
    pairs = images.reshape(b // 2, 2 * v, *images.shape[2:])
    order = jnp.argsort(~real, axis=1, stable=True)[:, :packed]  # real slots first
    picked = jnp.take_along_axis(
      pairs, order.reshape(order.shape + (1,) * (images.ndim - 2)), axis=1
    )
    features = self.encode(picked)  # [B / 2, packed, D]
    rank = jnp.clip(jnp.cumsum(real, axis=1) - 1, 0, packed - 1)  # slot -> packed position
    spread = jnp.take_along_axis(features, rank[..., None], axis=1)
    return jnp.where(real[..., None], spread, 0).reshape(b, v, -1)

  def reconstruct(
    self, features: jax.Array, mask: jax.Array, train: bool = False
  ) -> dict[str, jax.Array]:
    """`encode`'s `[B, V, D]` features and the `[B, V]` mask of real views -> `__call__`'s
    outputs."""
    fused = self.attention(features, mask.astype(bool))
    coarse = self.decoder(fused).astype(jnp.float32)
    refined = self.refiner(coarse, train=train).astype(jnp.float32)
    return dict(
      coarse_logits=coarse,
      refined_logits=refined,
      coarse=jax.nn.sigmoid(coarse),
      refined=jax.nn.sigmoid(refined),
    )


def create_model(model_config: ml_collections.ConfigDict) -> Refine3DNet:
  """Builds the model from `config.model`, after checking every value."""
  configlib.validate_model(model_config)
  fields = dict(model_config)
  fields['dtype'] = jnp.dtype(fields['dtype'])
  fields['encoder_widths'] = tuple(fields['encoder_widths'])
  fields['encoder_shortcuts'] = tuple(bool(s) for s in fields['encoder_shortcuts'])
  fields['decoder_widths'] = tuple(fields['decoder_widths'])
  fields['refiner_widths'] = tuple(fields['refiner_widths'])
  return Refine3DNet(**fields)


def init_variables(model: Refine3DNet, rng: jax.Array) -> dict:
  """Initial `{'params', 'batch_stats'}` for `model` (jitted), from `rng`."""
  s = model.image_size
  dummy = jnp.zeros((1, 1, s, s, 3), jnp.float32)
  # XLA:CPU compiles partitionable threefry ~6x slower (measured 1.3 s vs 0.2 s per
  # parameter tensor; 40 s vs 7 s for the quick model). Parameters start replicated, so
  # the classic bit layout loses nothing; scoping the flag here keeps the initial values
  # the same whichever program calls this.
  with jax.threefry_partitionable(False):
    return jax.jit(functools.partial(model.init, train=False))(rng, dummy)
