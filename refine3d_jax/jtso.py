"""JTSO (Refine3DNet's Algorithm 1): stages -> parameter groups -> one optax.multi_transform.

The model's subtrees form three groups: `base` (encoder + decoder), `att` (attention) and
`ref` (refiner). A stage says which groups learn and from which loss:

  base   single-view batches; base and ref learn from the single-view loss
  att    multi-view batches;  att and ref learn from the multi-view loss
  jtso   both batches; base <- single-view loss, att <- multi-view loss, ref <- the mean
         of the two (ref only sees the refined-volume term: the coarse one does not
         depend on it)
  joint  multi-view batches; every group learns from the multi-view loss (end-to-end)

Schedules: 'jtso' = base, att from k1, jtso from k2 (the paper); 'attsets' = base, att
from k1 (AttSets' two-stage FASet); 'end_to_end' = joint throughout (the ablation);
'jtso_joint' = base, att from k1, joint from k2 (stages 1-2, then the decoder learns on
fused features too: a recipe variant, not the paper's).

The optimizer is always `multi_transform({group: scale_by_adam})` over the same labels, so
its state has one structure in every stage and a checkpoint of any stage restores in any
other. A group a stage freezes keeps its parameters and its Adam moments and count
bit-identical (`apply_updates` selects the old leaves, it does not add zeros). Learning
rates are a function of the global step (not of a group's Adam count), times a per-group
scale.
"""

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from refine3d_jax import configlib
from refine3d_jax.models import SUBTREES

GROUPS = ('base', 'att', 'ref')
GROUP_OF = {'encoder': 'base', 'decoder': 'base', 'attention': 'att', 'refiner': 'ref'}
SCHEDULES = configlib.SCHEDULES


@dataclasses.dataclass(frozen=True)
class Stage:
  """Which groups learn from the single-view and from the multi-view loss."""

  name: str
  index: int  # 1-based, for logs
  single: tuple[str, ...] = ()
  multi: tuple[str, ...] = ()

  @property
  def trainable(self) -> frozenset[str]:
    return frozenset(self.single) | frozenset(self.multi)


STAGES = {
  'base': Stage('base', 1, single=('base', 'ref')),
  'att': Stage('att', 2, multi=('att', 'ref')),
  'jtso': Stage('jtso', 3, single=('base', 'ref'), multi=('att', 'ref')),
  'joint': Stage('joint', 0, multi=GROUPS),
}


def param_labels(params: Mapping[str, Any]) -> dict[str, Any]:
  """The group label of every parameter leaf; fails on a subtree no group claims."""
  unknown = sorted(set(params) - set(GROUP_OF))
  if unknown or set(params) != set(SUBTREES):
    raise ValueError(f'parameter subtrees {sorted(params)} do not match {SUBTREES}')
  return {name: jax.tree.map(lambda _, g=GROUP_OF[name]: g, tree) for name, tree in params.items()}


def schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> list[tuple[int, str]]:
  """[(first step, stage name), ...] in order, from config.train (epochs -> steps)."""
  t = config.train
  k1, k2 = round(t.k1_epochs * steps_per_epoch), round(t.k2_epochs * steps_per_epoch)
  if t.schedule == 'jtso':
    return [(0, 'base'), (k1, 'att'), (k2, 'jtso')]
  if t.schedule == 'attsets':
    return [(0, 'base'), (k1, 'att')]
  if t.schedule == 'jtso_joint':
    return [(0, 'base'), (k1, 'att'), (k2, 'joint')]
  if t.schedule == 'end_to_end':
    return [(0, 'joint')]
  raise ValueError(f'config.train.schedule = {t.schedule!r}: must be one of {SCHEDULES}')


def stage_at(step: int, plan: list[tuple[int, str]]) -> Stage:
  """The stage that runs step `step` (a stage starting where the next starts is skipped)."""
  name = plan[0][1]
  for start, stage in plan:
    if step >= start:
      name = stage
  return STAGES[name]


def learning_rate_fn(config: ml_collections.ConfigDict, steps_per_epoch: int | None) -> Callable:
  """step -> base learning rate: train.learning_rate, times lr_decay_factor after each
  of train.lr_decay_epochs; constant when `steps_per_epoch` is None (a benchmark or check
  that runs steps, not a schedule)."""
  t = config.train
  if steps_per_epoch is None:
    return optax.constant_schedule(t.learning_rate)
  boundaries = {round(e * steps_per_epoch): t.lr_decay_factor for e in t.lr_decay_epochs}
  return optax.piecewise_constant_schedule(t.learning_rate, boundaries)


def optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam directions (no learning rate) per group; `apply_updates` scales them."""
  t = config.train
  adam = lambda: optax.scale_by_adam(b1=t.adam_b1, b2=t.adam_b2, eps=t.adam_eps)
  return optax.multi_transform({g: adam() for g in GROUPS}, param_labels)


def route_gradients(stage: Stage, single: Any, multi: Any) -> dict[str, Any]:
  """Per subtree, the gradient its group takes in `stage` (zeros for frozen groups)."""
  grads = {}
  for name in SUBTREES:
    group = GROUP_OF[name]
    parts = [
      g[name] for g, groups in ((single, stage.single), (multi, stage.multi)) if group in groups
    ]
    if not parts:
      ref = single if single is not None else multi
      grads[name] = jax.tree.map(jnp.zeros_like, ref[name])
    else:
      grads[name] = jax.tree.map(lambda *xs: sum(xs) / len(xs), *parts)
  return grads


def apply_updates(
  tx: optax.GradientTransformation,
  stage: Stage,
  params: dict,
  opt_state,
  grads: dict,
  learning_rate: jax.Array,
  lr_scale: Mapping[str, float],
):
  """One optimizer step for the groups `stage` trains; the others stay bit-identical.

  Returns (new params, new opt_state, {group: learning rate used}).
  """
  directions, new_state = tx.update(grads, opt_state, params)
  rates = {g: learning_rate * lr_scale[g] for g in GROUPS}
  new_params = {}
  for name in SUBTREES:
    group = GROUP_OF[name]
    if group in stage.trainable:
      new_params[name] = jax.tree.map(
        lambda p, d: p - rates[group] * d, params[name], directions[name]
      )
    else:
      new_params[name] = params[name]
  inner = {
    g: new_state.inner_states[g] if g in stage.trainable else opt_state.inner_states[g]
    for g in GROUPS
  }
  return new_params, new_state._replace(inner_states=inner), rates
