r"""Benchmark: the machine's matmul ceiling, the training step per JTSO stage, inference
latency, the input pipeline and memory, on whatever devices are present.

  python -m refine3d_jax.bench --config=configs/jtso.py:paper [--views=1,3] [--batch=4]
      [--steps=10] [--latency_batches=1,32] [--json] [--train_only] [--cpu_devices=0]

Training steps run on random batches of the config's shapes (the data never limits them;
view counts drawn in pairs and the multi-view pass packed where the config trains so) over
every local device (on a CPU, one per core as main.py makes them), the batch sharded as in
training; times are medians of `--steps` runs after one compiling call, whose time is
reported apart, and warm-up steps until two in a row leave the peak RSS unchanged (at most
10: where malloc keeps freed memory, hostmem.py, the heap grows over the first steps). Model
FLOPs per step come from XLA's cost analysis of the lowered step on the CPU backend (GPU
backends leave out the convolutions cuDNN runs), counting a multiply-add as 2; the fraction
of the ceiling is achieved FLOP/s over the best matmul FLOP/s in the model's dtype measured
in the same run (two square sizes, `CEILING_SIZES`; float32's always, bfloat16's too on GPUs
and for a bfloat16 model). The model's parameters and forward FLOPs per object at 1 and 20
views (`summary`); inference latency, the median of 10 calls (or `--steps`, if more; fewer
where a call takes seconds) after the compiling call and 3 untimed ones
(`bench_inference`). Where the time goes: each of the four modules alone, forward and
backward on the multi-view batch's shapes, with its share of their summed time. The input
pipeline is timed on the config's dataset when it is built (the training protocol,
`--views` views) and reported as a ratio to the examples per second the slowest stage
consumes. Peak memory: device statistics where the backend has
them, and the process's peak RSS. Last, the wall time of the config's whole run (training,
validations, evaluation) at these rates (`projection.py`; the paper run needs no data). As
main.py, it re-executes itself with glibc's malloc tuned (refine3d_jax/hostmem.py; the
header says how, and whether the machine's balloon reports free pages to its hypervisor).
"""

if __name__ == '__main__':  # first: glibc reads its tunables when a process starts
  from refine3d_jax import hostmem

  hostmem.tune_malloc()

import functools
import json
import resource
import time
from typing import Any, Sequence

from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np

from refine3d_jax import cli, configlib, hostmem, input_pipeline, jtso, parallel, projection
from refine3d_jax import summary, timing
from refine3d_jax import steps as steps_lib
from refine3d_jax import train, train_state
from refine3d_jax.errors import UserError


# Square matmul sides whose best GFLOP/s is the ceiling. One 4096^3 bf16 matmul takes
# 0.3 ms on an H100, too short to time steadily (it measured 333 and 447 TFLOP/s in two
# runs); 8192^3 takes 8x longer.
CEILING_SIZES = {'cpu': (1024, 2048), 'gpu': (4096, 8192)}


def matmul_ceiling(dtype: str, sizes: Sequence[int], repeats: int = 10) -> tuple[float, int]:
  """The best GFLOP/s of a square matmul in `dtype` over `sizes` (median of `repeats`
  calls each) on the default device, and the side that reached it."""
  best = (0.0, 0)
  for size in sizes:
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.dtype(dtype))
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.dtype(dtype))
    f = jax.jit(lambda a, b: a @ b)
    seconds = timing.median_time(lambda f=f, a=a, b=b: f(a, b), repeats)
    best = max(best, (2 * size**3 / seconds / 1e9, size))
  return best


def random_batch(
  config: ml_collections.ConfigDict, batch: int, views: int, seed: int = 0
) -> dict[str, np.ndarray]:
  """A training batch of the config's shapes with random contents. Every view is real,
  unless the config draws view counts in pairs (input_pipeline.pair_total of `batch`
  objects of `views` views): then objects 2i and 2i + 1 hold k and total - k real views,
  the first ones, as the pipeline gives them (k uniform, `paired_mask`)."""
  rng = np.random.default_rng(seed)
  s, v = config.model.image_size, config.model.volume_size
  total = input_pipeline.pair_total(with_batch(config, batch, views), multi=True)
  paired = total and batch % 2 == 0
  return dict(
    images=rng.standard_normal((batch, views, s, s, 3), dtype=np.float32),
    mask=paired_mask(batch, views, total, rng) if paired else np.ones((batch, views), bool),
    voxels=rng.random((batch, v, v, v)) < 0.1,
  )


def paired_mask(batch: int, views: int, total: int, rng: np.random.Generator) -> np.ndarray:
  """[batch, views] masks of the first k and total - k views of objects 2i and 2i + 1
  (k uniform in [total - views, views]; batch even)."""
  k = rng.integers(total - views, views + 1, size=batch // 2)
  counts = np.stack([k, total - k], axis=1).reshape(-1)
  return np.arange(views)[None, :] < counts[:, None]


def with_batch(config: ml_collections.ConfigDict, batch: int, views: int):
  """A copy of `config` whose training batch is `batch` objects of `views` views (what
  train.packed_views reads), at most `views` of them drawn as the minimum."""
  config = config.copy_and_resolve_references()
  config.train.batch_size = batch
  config.train.num_views = views
  config.data.min_views = min(config.data.min_views, views)  # as train.py's iterators do
  return config


def stage_batch(
  batch: dict[str, np.ndarray], stage: jtso.Stage, single_views: int = 1
) -> dict[str, np.ndarray]:
  """`batch` as `stage` consumes it: its first `single_views` views for a single-view
  stage (`train.single_views`)."""
  if stage.multi:
    return dict(batch)
  return {k: (x[:, :single_views] if k in ('images', 'mask') else x) for k, x in batch.items()}


def bench_train(
  config: ml_collections.ConfigDict, batch: int, views: int, steps: int
) -> dict[str, dict[str, float]]:
  """Per JTSO stage: compile s, step s (median), examples/s, GFLOPs per step. The
  multi-view stages encode only the real views where training does (train.packed_views)."""
  config = with_batch(config, batch, views)
  model, tx, stage_steps, _ = train.programs(config)
  mesh = parallel.make_mesh()
  state = parallel.replicate(train_state.create_train_state(config, model, tx), mesh)
  data = random_batch(config, batch, views)
  lr_scale = dict(config.train.lr_scale)
  out = {}
  for name, stage in jtso.STAGES.items():
    if name == 'joint':
      continue  # end to end: the cost of stage 'att' plus the base's gradient
    b = stage_batch(data, stage, config.train.single_views)
    sharded = parallel.shard_batch(b, mesh)
    packed = train.packed_views(config, stage)
    step = functools.partial(stage_steps[name], packed=packed)
    start = time.perf_counter()
    state, metrics = step(state, sharded)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    holder = {'state': state}

    def run(holder=holder, step=step, sharded=sharded):
      holder['state'], m = step(holder['state'], sharded)
      return m

    warmup = timing.warm_up(run)
    step_s = timing.median_time(run, steps, warm=False)
    state = holder['state']
    flops = summary.cpu_flops(
      lambda s, x: steps_lib.train_step(
        s,
        x,
        model=model,
        tx=tx,
        stage=stage,
        lr_fn=lambda _: 1e-3,
        lr_scale=lr_scale,
        single_views=config.train.single_views,
        packed=packed,
      ),
      jax.device_get(state),
      b,
    )
    out[name] = dict(
      compile_s=compile_s,
      warmup_steps=warmup,
      step_s=step_s,
      examples_per_s=batch / step_s,
      gflops_per_step=flops / 1e9,
      gflops_per_s=flops / step_s / 1e9,
    )
  return out


def _module_call(name: str):
  """method for `model.apply` running only submodule `name` (the refiner in train mode,
  as in a training step)."""
  if name == 'attention':
    return lambda m, x: m.attention(x, jnp.ones(x.shape[:2], bool))
  if name == 'refiner':
    return lambda m, x: m.refiner(x, train=True)
  return lambda m, x: getattr(m, name)(x)


def bench_modules(
  config: ml_collections.ConfigDict, batch: int, views: int, repeats: int
) -> dict[str, dict[str, float]]:
  """Forward + backward of each submodule alone, on a multi-view batch's shapes: ms,
  GFLOPs, GFLOP/s and its share of the four modules' time. The gradient is taken with
  respect to the parameters and (except for the encoder, whose input is data) the input,
  as in a training step. The encoder runs on every view slot (B x views), also where
  training packs the real views (data.paired_views)."""
  model, tx, _, _ = train.programs(config)
  variables = train_state.variables_of(train_state.create_train_state(config, model, tx))
  rng = np.random.default_rng(0)
  s, d, v = config.model.image_size, config.model.latent_dim, config.model.volume_size
  inputs = dict(
    encoder=(batch * views, s, s, 3),
    attention=(batch, views, d),
    decoder=(batch, d),
    refiner=(batch, v, v, v),
  )
  out = {}
  for name, shape in inputs.items():
    x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
    call = _module_call(name)

    def loss(params, x, call=call):
      y = model.apply({**variables, 'params': params}, x, method=call, mutable=['batch_stats'])[0]
      return jnp.mean(jnp.square(y.astype(jnp.float32)))

    grad = jax.grad(loss, argnums=0 if name == 'encoder' else (0, 1))
    fn = jax.jit(grad)
    seconds = timing.median_time(lambda fn=fn, x=x: fn(variables['params'], x), repeats)
    flops = summary.cpu_flops(grad, variables['params'], x)
    out[name] = dict(ms=seconds * 1e3, gflops=flops / 1e9, gflops_per_s=flops / seconds / 1e9)
  total = sum(m['ms'] for m in out.values())
  for m in out.values():
    m['share'] = m['ms'] / total
  return out


LATENCY_WARMUP, LATENCY_REPEATS = 3, 10


def bench_inference(
  config: ml_collections.ConfigDict,
  repeats: int = LATENCY_REPEATS,
  batches: Sequence[int] = (1, 32),
  warm: int = LATENCY_WARMUP,
) -> dict[str, float]:
  """Milliseconds per object, eval mode, for 1 and 20 views at each batch size: the
  median of `repeats` calls after the compiling call and `warm` untimed ones
  (timing.median_time's budget cuts both for slow calls: the paper model's 20-view batches
  of 32 on a CPU). A process's first calls after the compiling one run slower (paper
  preset, one view, batch 1, 2-core AMD EPYC Zen 5: 193, 188, 157, 146 ms, then 95-120),
  so the median of 3 calls after one, as before, measured that transient."""
  model, tx, _, _ = train.programs(config)
  state = train_state.create_train_state(config, model, tx)
  variables = train_state.variables_of(state)
  forward = jax.jit(
    lambda v, x: model.apply(v, x, train=False)['refined'],
    compiler_options=parallel.single_device_options(),
  )
  out = {}
  for views in (1, 20):
    for batch in batches:
      x = jnp.asarray(random_batch(config, batch, views)['images'])
      jax.block_until_ready(forward(variables, x))  # compiles: not one of the `warm` calls
      out[f'{views}v_b{batch}_ms_per_object'] = (
        timing.median_time(lambda x=x: forward(variables, x), repeats, warm=warm) / batch * 1e3
      )
  return out


def bench_input(config: ml_collections.ConfigDict, views: int, batches: int) -> dict[str, Any]:
  """Training-pipeline examples/s with `views` views, or why it was not measured."""
  try:
    source = input_pipeline.open_source(config.data, 'train')
  except (FileNotFoundError, ValueError) as e:
    return dict(examples_per_s=None, note=f'not measured: {e}')
  eps = input_pipeline.examples_per_second(config, views, num_batches=batches, source=source)
  return dict(
    examples_per_s=eps,
    note=f'{config.data.dataset}, {views} views, {config.data.num_workers} workers',
  )


def memory() -> dict[str, float | None]:
  stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], 'memory_stats') else None
  device_peak = stats.get('peak_bytes_in_use') if stats else None
  return dict(
    host_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    device_peak_mb=None if device_peak is None else device_peak / 2**20,
  )


def run(
  config: ml_collections.ConfigDict,
  batch: int,
  views: Sequence[int],
  steps: int,
  input_batches: int = 10,
  latency_batches: Sequence[int] = (1, 32),
  train_only: bool = False,
) -> dict[str, Any]:
  """Every measurement, as one JSON-ready dict; `train_only`: the ceiling and the
  training steps, for A/B runs (the other entries are then absent)."""
  configlib.validate(config)
  device = jax.devices()[0]
  gpu = device.platform != 'cpu'
  sizes = CEILING_SIZES['gpu' if gpu else 'cpu']
  ceilings, ceiling_sizes = {}, {}
  # bfloat16's ceiling on GPUs, and wherever the model computes in it (a bfloat16 model on a
  # CPU is measured against the CPU's bfloat16 matmul)
  bf16 = gpu or config.model.dtype == 'bfloat16'
  for dtype in ('float32', 'bfloat16') if bf16 else ('float32',):
    ceilings[dtype], ceiling_sizes[dtype] = matmul_ceiling(dtype, sizes)
  multi_views = max(views)
  config = config.copy_and_resolve_references()
  config.train.num_views = multi_views
  stages = bench_train(config, batch, multi_views, steps)
  header = dict(
    date=time.strftime('%Y-%m-%d'),
    device=timing.device_name(device),
    devices=jax.device_count(),
    huge_pages=hostmem.active(),
    keeps_freed_memory=hostmem.keeps_freed_memory(),
    free_page_reporting=hostmem.reports_free_pages(),
    preset=config.get('preset', ''),
    dtype=config.model.dtype,
    image_size=config.model.image_size,
    batch=batch,
    views=multi_views,
    matmul_gflops=ceilings,
    matmul_size=ceiling_sizes,
  )
  ceiling = ceilings['bfloat16' if config.model.dtype == 'bfloat16' else 'float32']
  for s in stages.values():
    s['fraction_of_ceiling'] = s['gflops_per_s'] / ceiling
  if train_only:
    return dict(**header, train=stages, memory=memory())
  modules = bench_modules(config, batch, multi_views, max(3, steps // 2))
  for s in modules.values():
    s['fraction_of_ceiling'] = s['gflops_per_s'] / ceiling
  slowest = min(s['examples_per_s'] for s in stages.values())
  pipeline = bench_input(config, multi_views, input_batches)
  inference = bench_inference(config, max(LATENCY_REPEATS, steps), latency_batches)
  model_summary = summary.summarize(config)
  model = dict(
    params=model_summary['params']['total'],
    gflops_per_object={n: f['total'] / 1e9 for n, f in model_summary['flops'].items()},
  )
  b = max(latency_batches)
  latency = {v: inference[f'{v}v_b{b}_ms_per_object'] for v in (1, 20)}
  rates = {k: s['examples_per_s'] for k, s in stages.items()}
  try:
    run_time = projection.project(config, rates, latency, projection.split_sizes(config.data))
  except (UserError, ValueError) as e:  # not built, or a schedule with an untimed stage
    run_time = dict(note=str(e))
  if pipeline['examples_per_s'] is not None:
    pipeline['ratio_to_step'] = pipeline['examples_per_s'] / slowest
  return dict(
    **header,
    train=stages,
    modules=modules,
    model=model,
    inference=inference,
    run_time=run_time,
    input_pipeline=pipeline,
    memory=memory(),
  )


def format_table(r: dict[str, Any]) -> str:
  lines = [
    f'refine3d_jax bench, {r["date"]}: {r["device"]} x{r["devices"]}'
    f'{", huge pages" if r.get("huge_pages") else ""}'
    f'{", freed memory kept" if r.get("keeps_freed_memory") else ""}'
    f'{", free pages reported to the host" if r.get("free_page_reporting") else ""}; preset '
    f'{r["preset"]}, {r["dtype"]}, {r["image_size"]} px, batch {r["batch"]}, '
    f'{r["views"]} views in multi-view stages',
    'matmul ceiling: '
    + ', '.join(
      f'{k} {v:.1f} GFLOP/s ({r["matmul_size"][k]}^3)' for k, v in r['matmul_gflops'].items()
    ),
    f'{"stage":<6}{"compile s":>10}{"step ms":>10}{"ex/s":>9}{"GFLOP/step":>12}'
    f'{"GFLOP/s":>9}{"of ceiling":>11}',
  ]
  for name, s in r['train'].items():
    lines.append(
      f'{name:<6}{s["compile_s"]:>10.1f}{s["step_s"] * 1e3:>10.1f}'
      f'{s["examples_per_s"]:>9.1f}{s["gflops_per_step"]:>12.2f}'
      f'{s["gflops_per_s"]:>9.1f}{s["fraction_of_ceiling"]:>10.0%}'
    )
  if 'modules' not in r:  # --train_only
    return '\n'.join(lines)
  lines.append(f'modules alone, forward + backward, batch {r["batch"]} x {r["views"]} views:')
  lines.append(f'{"module":<10}{"ms":>10}{"GFLOP":>9}{"GFLOP/s":>9}{"of ceiling":>11}{"share":>7}')
  for name, m in r['modules'].items():
    lines.append(
      f'{name:<10}{m["ms"]:>10.1f}{m["gflops"]:>9.2f}{m["gflops_per_s"]:>9.1f}'
      f'{m["fraction_of_ceiling"]:>10.0%}{m["share"]:>7.0%}'
    )
  g = r['model']['gflops_per_object']
  lines.append(
    f'model: {r["model"]["params"]:,} parameters, forward GFLOPs per object '
    + ', '.join(f'{v:.1f} ({n} view{"s" * (int(n) > 1)})' for n, v in g.items())
  )
  lines.append(
    'inference ms/object: '
    + ', '.join(f'{k.replace("_ms_per_object", "")} {v:.2f}' for k, v in r['inference'].items())
  )
  p = r['input_pipeline']
  lines.append(
    'input pipeline: '
    + (
      f'{p["examples_per_s"]:.1f} examples/s ({p["note"]}), {p["ratio_to_step"]:.1f}x the '
      'slowest stage'
      if p['examples_per_s'] is not None
      else p['note']
    )
  )
  lines.append('a whole run of this config at these rates: ' + projection.describe(r['run_time']))
  m = r['memory']
  lines.append(
    f'memory: host peak RSS {m["host_peak_rss_mb"]:.0f} MB'
    + (f', device peak {m["device_peak_mb"]:.0f} MB' if m['device_peak_mb'] is not None else '')
  )
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  cli.no_arguments(argv)
  error = '--views, --latency_batches, --batch and --steps must be positive integers'
  views = cli.positive_ints(_VIEWS.value, error)
  latency = cli.positive_ints(_LATENCY.value, error)
  cli.positive_ints([_BATCH.value, _STEPS.value], error)
  try:
    parallel.use_cpu_cores(_BATCH.value, _CPU_DEVICES.value, '--batch')
  except ValueError as e:
    raise UserError(str(e)) from None
  config = _CONFIG.value
  result = run(
    config, _BATCH.value, views, _STEPS.value, latency_batches=latency, train_only=_TRAIN_ONLY.value
  )
  print(format_table(result))
  if _JSON.value:
    print(json.dumps(result))


if __name__ == '__main__':
  _CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/jtso.py', 'Experiment config.', lock_config=True
  )
  _VIEWS = flags.DEFINE_list(
    'views', ['1', '3'], "View counts; the largest is the multi-view stages' batch."
  )
  _BATCH = flags.DEFINE_integer('batch', 4, 'Objects per training step (global).')
  _STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps per stage (median).')
  _LATENCY = flags.DEFINE_list(
    'latency_batches', ['1', '32'], 'Batch sizes of the inference latency (1 and 20 views each).'
  )
  _CPU_DEVICES = flags.DEFINE_integer(
    'cpu_devices', 0, 'CPU devices as main.py splits them (0: one per core; 1: one device).'
  )
  _JSON = flags.DEFINE_bool('json', False, 'Also print one JSON line with every figure.')
  _TRAIN_ONLY = flags.DEFINE_bool(
    'train_only', False, 'Only the ceiling and the training steps (for A/B runs).'
  )
  cli.run(main)
