"""The whole training state as one pytree: what a checkpoint holds (with the data
iterator's state beside it)."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from refine3d_jax.models import Refine3DNet, init_variables


@flax.struct.dataclass
class TrainState:
  """step: int32 []; params / batch_stats: the model's collections; opt_state: the one
  optax.multi_transform state (same structure in every JTSO stage); rng: uint32 [2], the
  raw data of the root key (`jax.random.wrap_key_data(rng)`), folded with the step inside
  the train step so a resumed run draws the same numbers; ema_params: the exponential
  moving average of params (`train.ema_decay > 0`), else None."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  ema_params: Any = None

  def key(self) -> jax.Array:
    return jax.random.wrap_key_data(self.rng)


def create_train_state(
  config: ml_collections.ConfigDict, model: Refine3DNet, tx: optax.GradientTransformation
) -> TrainState:
  """Initial state from config.seed: model variables, optimizer state, root key (and the
  moving average of the weights when train.ema_decay > 0)."""
  root = jax.random.key(config.seed)
  variables = init_variables(model, jax.random.fold_in(root, 0))
  params = variables['params']
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=variables.get('batch_stats', {}),
    opt_state=tx.init(params),
    rng=jax.random.key_data(root),
    # a copy: donated steps must not see one buffer twice
    ema_params=(jax.tree.map(jnp.copy, params) if config.train.ema_decay > 0 else None),
  )


def variables_of(state: TrainState) -> dict[str, Any]:
  """The model's variables in a TrainState, for evaluation: the averaged params when the
  run keeps them (`train.ema_decay > 0`), with the live BatchNorm statistics."""
  params = state.params if state.ema_params is None else state.ema_params
  return {'params': params, 'batch_stats': state.batch_stats}
