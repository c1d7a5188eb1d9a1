"""The pure steps that training jits: `train_step` (its `loss_fn`) and `eval_step`.

The step is `(state, batch) -> (state, metrics)`, one compiled version per JTSO stage
(the stage is static). A batch holds `images [B, n, S, S, 3]`, `mask [B, n]` and
`voxels [B, 32, 32, 32]`; stages that need a single-view batch take view 0 of it (the
views are drawn at random, so view 0 is a random view), or with `train.single_views = k`
its first k views, each its own single-view example (`single_view_batch`). With
`packed = P` (input_pipeline.pair_total) the multi-view pass encodes only the real views.
"""

import contextlib
from typing import Any

import jax
import jax.numpy as jnp
import optax

from refine3d_jax import jtso, losses, metrics, parallel
from refine3d_jax.models import Refine3DNet
from refine3d_jax.train_state import TrainState


def ema_update(ema: Any, params: Any, decay: float, step: jax.Array) -> Any:
  """ema <- d ema + (1 - d) params, d = min(decay, (1 + step) / (10 + step)): the
  warm-up of TensorFlow's ExponentialMovingAverage, so early steps are not dragged
  towards the initial weights."""
  step = step.astype(jnp.float32)
  d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  return jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema, params)


def single_view_batch(
  images: jax.Array, mask: jax.Array, voxels: jax.Array, k: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """k single-view examples per object: images [B, n, ...] -> [B * k, 1, ...].

  Object b's i-th example is its view i mod n_b (n_b = its real views, the first ones,
  as the pipeline pads), so a padded slot never becomes an example: an object with fewer
  than k real views repeats them. k = 1 is view 0, as before the option existed.
  """
  real = jnp.maximum(mask.sum(axis=1, keepdims=True), 1)  # [B, 1]
  index = jnp.arange(k)[None, :] % real  # [B, k], always < n: no bounds select needed
  picked = jnp.take_along_axis(
    images,
    index.reshape(index.shape + (1,) * (images.ndim - 2)),
    axis=1,
    mode='promise_in_bounds',
  )
  flat = picked.reshape((-1, 1) + images.shape[2:])
  return flat, jnp.ones(flat.shape[:2], bool), jnp.repeat(voxels, k, axis=0)


def _forward(model: Refine3DNet, images, mask, packed, first):
  features = model.features(images, mask, packed, first)
  return model.reconstruct(features, mask, train=True), features


def loss_fn(
  params, batch_stats, model: Refine3DNet, images, mask, voxels, packed: int = 0, first=None
):
  """Reconstruction loss of one batch in train mode -> (loss, (terms, new batch_stats,
  the encoder's features [B, V, D])); `packed` and `first` as in Refine3DNet.features."""
  (outputs, features), updates = model.apply(
    {'params': params, 'batch_stats': batch_stats},
    images,
    mask,
    packed,
    first,
    method=_forward,
    mutable=['batch_stats'],
  )
  loss, terms = losses.reconstruction_loss(outputs, voxels)
  return loss, (terms, updates['batch_stats'], features)


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  model: Refine3DNet,
  tx: optax.GradientTransformation,
  stage: jtso.Stage,
  lr_fn,
  lr_scale: dict[str, float],
  single_views: int = 1,
  ema_decay: float = 0.0,
  packed: int = 0,
  data_parallel: bool = False,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One JTSO step of `stage`: the losses it needs, routed gradients, Adam on its groups.

  The single-view loss is over `single_views` views per object (`single_view_batch`).
  `packed` > 0: objects 2i and 2i + 1 hold that many real views together, and the
  multi-view pass encodes only them (Refine3DNet.encode_packed; same losses).
  With both losses (stage 3), BatchNorm keeps the statistics of the multi-view pass, and
  where the multi-view loss does not train the encoder (JTSO's stage 3) that pass takes
  view 0's features from the single-view pass instead of encoding it again (its encoder
  gradient, which that features' reuse cuts, is discarded anyway): the same losses and
  routed gradients, one encoding per object fewer.
  A state with ema_params moves them towards the new params (`ema_update`).
  `data_parallel`: the gradients trace under the data mesh's abstract mesh
  (parallel.make_mesh, every device), so layers may replicate small operands on every
  device of it (the refiner's bottleneck gathers its batch rows: refiner.gathered_rows);
  the state and batch must then be placed on that mesh (parallel.replicate, shard_batch).
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  data = parallel.make_mesh().abstract_mesh if data_parallel else None

  def run(images, mask, voxels, packed=0, first=None):
    with jax.sharding.use_abstract_mesh(data) if data else contextlib.nullcontext():
      return grad_fn(state.params, state.batch_stats, model, images, mask, voxels, packed, first)

  out = {}
  single = multi = first = None
  batch_stats = state.batch_stats
  if stage.single:
    (loss, (terms, batch_stats, features)), single = run(
      *single_view_batch(batch['images'], batch['mask'], batch['voxels'], single_views)
    )
    out.update(loss_single=loss, coarse_single=terms['coarse'], refined_single=terms['refined'])
    if stage.multi and jtso.GROUP_OF['encoder'] not in stage.multi:
      # example b * single_views of the single-view batch is object b's view 0
      first = features[::single_views, 0]
  if stage.multi:
    (loss, (terms, batch_stats, _)), multi = run(
      batch['images'], batch['mask'], batch['voxels'], packed, first
    )
    out.update(loss_multi=loss, coarse_multi=terms['coarse'], refined_multi=terms['refined'])
  grads = jtso.route_gradients(stage, single, multi)
  lr = lr_fn(state.step)
  params, opt_state, rates = jtso.apply_updates(
    tx, stage, state.params, state.opt_state, grads, lr, lr_scale
  )
  out.update({f'lr_{g}': rates[g] for g in jtso.GROUPS})
  out['grad_norm'] = optax.tree.norm(grads)
  ema = (
    None
    if state.ema_params is None
    else ema_update(state.ema_params, params, ema_decay, state.step)
  )
  new_state = state.replace(
    step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state, ema_params=ema
  )
  return new_state, out


def eval_step(
  variables: dict[str, Any],
  batch: dict[str, jax.Array],
  *,
  model: Refine3DNet,
  thresholds: tuple[float, ...],
  view_counts: tuple[int, ...],
) -> dict[str, Any]:
  """Eval-mode forward of one batch: `valid`, `label` and `voxels` passed through (so that
  hosts gather them with the outputs) and, for each n of `view_counts`, under
  `result['views'][str(n)]`, per output `coarse` and `refined` its probabilities and
  per-example IoU `iou_<output>` [B, T] at each threshold.

  The views are encoded once and each count n reconstructs from the first n of them (views
  past n masked out, exactly as if absent): the first-n protocol's nesting, so 1..20 views
  cost 20 encodings per object, not 1 + 2 + ... + 20 (one count per call for the random
  protocol, see view_passes)."""
  result = {k: batch[k] for k in ('valid', 'label', 'voxels')}

  def scored(outputs):
    out = {}
    for name in ('coarse', 'refined'):
      out[f'iou_{name}'] = metrics.iou(outputs[name], batch['voxels'], thresholds)
      out[name] = outputs[name]
    return out

  features = model.apply(variables, batch['images'], method=Refine3DNet.encode)
  first = jnp.arange(features.shape[1])
  result['views'] = {
    str(n): scored(
      model.apply(
        variables,
        features,
        batch['mask'] & (first < n),
        train=False,
        method=Refine3DNet.reconstruct,
      )
    )
    for n in view_counts
  }
  return result
