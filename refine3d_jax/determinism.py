r"""Run-to-run determinism on this machine: the same training steps twice, bit for bit.

  python -m refine3d_jax.determinism --config=configs/jtso.py:paper [--batch=4] [--views=3]
      [--steps=5] [--json]

For each JTSO stage, `--steps` steps run twice from the same initial state on the same
random batches (bench.random_batch, sharded over every local device as in training); the
parameters, BatchNorm statistics and losses of the two runs are compared. The evaluation
forward is compared the same way. Prints, per check, whether the runs are bit-identical,
and otherwise how many arrays differ and the largest absolute difference.

XLA on CPU is deterministic: same config and seed, same bits (also what the resume tests
rely on). On GPUs, run-to-run differences come from ops that accumulate with atomics
(scatter-add, some reductions) and from cuDNN's choice of algorithm;
`XLA_FLAGS=--xla_gpu_deterministic_ops=true` asks XLA for deterministic versions. README
("Determinism") records what this command measured on an H100 both ways.
"""

import json
from typing import Any, Sequence

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np

from refine3d_jax import bench, cli, configlib, jtso, parallel, train, train_state


def compare(a: Any, b: Any) -> dict[str, Any]:
  """{'identical', 'arrays', 'differing', 'max_abs_diff'} of two pytrees of arrays."""
  pairs = [
    (np.asarray(x), np.asarray(y))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  ]
  differing = [(x, y) for x, y in pairs if x.tobytes() != y.tobytes()]
  diff = max(
    (float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) for x, y in differing),
    default=0.0,
  )
  return dict(
    identical=not differing, arrays=len(pairs), differing=len(differing), max_abs_diff=diff
  )


def check(
  config: ml_collections.ConfigDict, batch: int, views: int, steps: int
) -> dict[str, dict[str, Any]]:
  """{stage name or 'eval': compare(first run, second run)}."""
  configlib.validate(config)
  config = bench.with_batch(config, batch, views)
  model, tx, stage_steps, eval_fn = train.programs(config)
  mesh = parallel.make_mesh()
  initial = jax.device_get(train_state.create_train_state(config, model, tx))
  batches = [bench.random_batch(config, batch, views, seed=i) for i in range(steps)]
  out = {}
  for name, stage in jtso.STAGES.items():
    packed = train.packed_views(config, stage)
    runs = []
    for _ in range(2):
      state = parallel.replicate(jax.tree.map(jnp.asarray, initial), mesh)
      losses = []
      for b in batches:
        b = parallel.shard_batch(bench.stage_batch(b, stage, config.train.single_views), mesh)
        state, m = stage_steps[name](state, b, packed=packed)
        losses.append(m)
      runs.append(jax.device_get((state.params, state.batch_stats, losses)))
    out[name] = compare(*runs)
  variables = train_state.variables_of(parallel.replicate(jax.tree.map(jnp.asarray, initial), mesh))
  b = {**batches[0], 'valid': np.ones(batch, bool), 'label': np.zeros(batch, np.int32)}
  sharded = parallel.shard_batch(b, mesh)
  out['eval'] = compare(
    *[jax.device_get(eval_fn(variables, sharded, view_counts=(1, views))) for _ in range(2)]
  )
  return out


def format_table(result: dict[str, dict[str, Any]], device: str) -> str:
  lines = [
    f'Run-to-run determinism on {device}',
    '',
    '| check | bit-identical | arrays differing | max abs diff |',
    '|---|---|---|---|',
  ]
  for name, r in result.items():
    lines.append(
      f'| {name} | {"yes" if r["identical"] else "NO"} | '
      f'{r["differing"]} of {r["arrays"]} | {r["max_abs_diff"]:.3g} |'
    )
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  cli.no_arguments(argv)
  if min(_BATCH.value, _VIEWS.value, _STEPS.value) < 1:
    raise app.UsageError('--batch, --views and --steps must be positive integers')
  result = check(_CONFIG.value, _BATCH.value, _VIEWS.value, _STEPS.value)
  device = f'{jax.device_count()} x {jax.devices()[0].device_kind}'
  print(format_table(result, device))
  if _JSON.value:
    print(json.dumps(dict(device=device, checks=result)))


if __name__ == '__main__':
  _CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/jtso.py', 'Experiment config.', lock_config=True
  )
  _BATCH = flags.DEFINE_integer('batch', 4, 'Objects per step (global).')
  _VIEWS = flags.DEFINE_integer('views', 3, 'Views per object in multi-view stages.')
  _STEPS = flags.DEFINE_integer('steps', 5, 'Steps per stage and run.')
  _JSON = flags.DEFINE_bool('json', False, 'Also print one JSON line.')
  cli.run(main)
