"""The wall time of a whole training run and its evaluation, projected from measured rates.

`bench` measures examples/s per JTSO stage and milliseconds per object at 1 and 20 views;
`project` multiplies them by what the config asks for: each stage's steps of its schedule,
the periodic validations (`eval.every_steps`, `eval.val_views`), and the evaluation that
`python -m refine3d_jax.evaluate` runs (the test and validation splits at every
`eval.view_counts`), forward passes only. Not counted: compiling, checkpoints, the input
pipeline (bench reports its headroom apart), and evaluation's F-scores, computed on the
host CPU (README, "Reproducing the paper": about 30 ms per object, view count and output
on one core). The time per object at n views is interpolated linearly between the 1- and
20-view latencies (the encoder's cost grows with the views).
"""

from typing import Any, Mapping

import ml_collections

from refine3d_jax import input_pipeline, jtso
from refine3d_jax.data.shapenet_r2n2 import shapenet_r2n2, splits
from refine3d_jax.errors import DataError, NotFoundError


def split_sizes(data: ml_collections.ConfigDict) -> dict[str, int]:
  """{split: objects} of the built dataset; unbuilt, a Pix2Vox-split `shapenet_r2n2`
  config counts the shipped split file (so a bare GPU machine can project the paper run).
  Raises DataError naming the dataset otherwise."""
  try:
    return {s: len(input_pipeline.open_source(data, s)) for s in input_pipeline.split_names(data)}
  except NotFoundError:
    if data.dataset != 'shapenet_r2n2':
      raise
  configs = {c.name: c for c in shapenet_r2n2.ShapenetR2n2.BUILDER_CONFIGS}
  config = configs.get(data.builder_config or 'pix2vox')
  if config is None or config.split_kind != 'pix2vox':
    raise DataError(
      f'shapenet_r2n2/{data.builder_config} is not built in {data.data_dir}: its split '
      'sizes are unknown (build it, or project a pix2vox config)'
    )
  ids = splits.read_split_file(splits.PIX2VOX_SPLIT_FILE, config.synsets)
  return {s: len(v) for s, v in ids.items()}


def _ms_per_object(latency_ms: Mapping[int, float], views: int) -> float:
  one, twenty = latency_ms[1], latency_ms[20]
  return one + (twenty - one) * (views - 1) / 19


def project(
  config: ml_collections.ConfigDict,
  examples_per_s: Mapping[str, float],
  latency_ms: Mapping[int, float],
  sizes: Mapping[str, int],
) -> dict[str, Any]:
  """Seconds of each stage's training, of the validations and of the final evaluation,
  and their total, for `config`'s run on a machine that trains stage `name` at
  `examples_per_s[name]` objects/s and evaluates at `latency_ms[1]` and `[20]` ms per
  object. Raises ValueError naming a stage the schedule needs but the rates lack."""
  t = config.train
  steps_per_epoch, num_steps = input_pipeline.run_steps(config, sizes['train'])
  plan = [(s, n) for s, n in jtso.schedule(config, steps_per_epoch) if s < num_steps]
  ends = [s for s, _ in plan[1:]] + [num_steps]
  untimed = [name for _, name in plan if name not in examples_per_s]
  if untimed:
    raise ValueError(f'stages {untimed} of schedule {t.schedule!r} were not timed')
  stages = {
    name: (end - start) * t.batch_size / examples_per_s[name]
    for (start, name), end in zip(plan, ends)
  }
  validations = num_steps // config.eval.every_steps + (num_steps % config.eval.every_steps > 0)
  val_objects = sizes.get('validation', 0)
  if config.eval.max_examples:
    val_objects = min(val_objects, config.eval.max_examples)
  per_validation = sum(_ms_per_object(latency_ms, v) for v in config.eval.val_views)
  validate_s = validations * val_objects * per_validation / 1e3
  per_object = sum(_ms_per_object(latency_ms, v) for v in config.eval.view_counts)
  evaluate_s = (sizes.get('test', 0) + sizes.get('validation', 0)) * per_object / 1e3
  return dict(
    steps=num_steps,
    steps_per_epoch=steps_per_epoch,
    split_sizes=dict(sizes),
    train_s=stages,
    validate_s=validate_s,
    evaluate_s=evaluate_s,
    total_s=sum(stages.values()) + validate_s + evaluate_s,
  )


def describe(run_time: Mapping[str, Any]) -> str:
  """One line of `project`'s result (or its note, where there was none)."""
  if 'total_s' not in run_time:
    return run_time['note']
  stages = ', '.join(f'{k} {v / 60:.1f}' for k, v in run_time['train_s'].items())
  total = run_time['total_s']
  total = f'{total / 3600:.2f} h' if total >= 3600 else f'{total / 60:.1f} min'
  return (
    f'{total} ({run_time["steps"]} steps; training {stages}, '
    f'validations {run_time["validate_s"] / 60:.1f}, evaluation '
    f'{run_time["evaluate_s"] / 60:.1f} min; forward passes, no F-scores)'
  )
