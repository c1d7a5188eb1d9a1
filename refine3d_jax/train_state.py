"""The whole training state as one pytree: what a checkpoint holds (with the data
iterator's state beside it)."""

from typing import Any

import flax.struct
import jax


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
