r"""Model summary: parameters per subtree and forward FLOPs per object.

  python -m refine3d_jax.summary --config=configs/jtso.py:paper [--views=1,20] [--json]

Parameter shapes come from `jax.eval_shape` and FLOPs from XLA:CPU's cost analysis of the
lowered (not compiled) eval-mode forward pass of one object, on any machine, so the
paper-size model is summarised in seconds. XLA counts a multiply-add as 2 FLOPs.
"""

import json
from typing import Sequence

from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from ml_collections import config_flags

from refine3d_jax import cli, configlib
from refine3d_jax.models import SUBTREES, create_model, init_variables


def count_params(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


def cpu_flops(fn, *args) -> float:
  """FLOPs of `fn(*args)` (arrays or ShapeDtypeStructs) from XLA:CPU's cost analysis of
  the lowered program."""
  # Always XLA:CPU's analysis of the lowered program: GPU backends analyse only compiled
  # programs and miss the FLOPs of convolutions run by cuDNN (measured on an H100:
  # 0.07 GFLOPs for the paper model's 32.7).
  on_cpu = jax.sharding.SingleDeviceSharding(jax.devices('cpu')[0])
  args = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=on_cpu), args)
  lowered = jax.jit(fn).lower(*args)
  cost = lowered.cost_analysis() or lowered.compile().cost_analysis()
  return float(cost['flops'])


def summarize(config: ml_collections.ConfigDict, views: Sequence[int] = (1, 20)) -> dict:
  """Parameter counts and forward FLOPs per object, in total and per subtree."""
  configlib.validate(config)
  model = create_model(config.model)
  variables = jax.eval_shape(lambda rng: init_variables(model, rng), jax.random.key(0))
  params = variables['params']
  s, d, vol = config.model.image_size, config.model.latent_dim, config.model.volume_size
  result = dict(
    preset=config.get('preset', ''),
    fusion=config.model.fusion,
    image_size=s,
    volume_size=vol,
    dtype=config.model.dtype,
    params={name: count_params(params[name]) for name in SUBTREES},
    batch_stats=count_params(variables.get('batch_stats', {})),
    flops={},
  )
  result['params']['total'] = count_params(params)
  shape = lambda *dims: jax.ShapeDtypeStruct(dims, jnp.float32)
  call = lambda method: lambda v, *xs: model.apply(v, *xs, method=method)
  for n in views:
    mask = jax.ShapeDtypeStruct((1, n), jnp.bool_)
    result['flops'][n] = dict(
      encoder=cpu_flops(call(lambda m, x: m.encoder(x)), variables, shape(n, s, s, 3)),
      attention=cpu_flops(call(lambda m, f, k: m.attention(f, k)), variables, shape(1, n, d), mask),
      decoder=cpu_flops(call(lambda m, z: m.decoder(z)), variables, shape(1, d)),
      refiner=cpu_flops(call(lambda m, c: m.refiner(c)), variables, shape(1, vol, vol, vol)),
      total=cpu_flops(call(None), variables, shape(1, n, s, s, 3)),
    )
  return result


def format_table(summary: dict) -> str:
  views = list(summary['flops'])
  head = (
    f'Refine3DNet ({summary["preset"] or "custom"} preset): fusion={summary["fusion"]}, '
    f'{summary["image_size"]}x{summary["image_size"]} views -> {summary["volume_size"]}^3, '
    f'{summary["dtype"]}'
  )
  cols = ['subtree', 'params'] + [f'GFLOPs/object, {n} view{"s" * (n > 1)}' for n in views]
  rows = [
    [name, f'{summary["params"][name]:,}']
    + [f'{summary["flops"][n][name] / 1e9:.3f}' for n in views]
    for name in (*SUBTREES, 'total')
  ]
  widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
  line = lambda cells: '  '.join(
    c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
  )
  out = [head, line(cols), line(['-' * w for w in widths])] + [line(r) for r in rows]
  out.append(
    f'(+ {summary["batch_stats"]:,} BatchNorm statistics; FLOPs: XLA cost analysis '
    'of the eval forward pass, batch of 1 object, multiply-add = 2)'
  )
  return '\n'.join(out)


def main(argv: Sequence[str]) -> None:
  cli.no_arguments(argv)
  views = cli.positive_ints(_VIEWS.value, f'--views must be positive integers, got {_VIEWS.value}')
  summary = summarize(_CONFIG.value, views)
  print(json.dumps(summary) if _JSON.value else format_table(summary))


if __name__ == '__main__':
  # Flags are defined only when run as a program, so importing this module (main.py
  # does) defines none.
  _CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/jtso.py', 'Experiment config.', lock_config=True
  )
  _VIEWS = flags.DEFINE_list('views', ['1', '20'], 'View counts to measure FLOPs for.')
  _JSON = flags.DEFINE_bool('json', False, 'Print one JSON line instead of the table.')
  cli.run(main)
