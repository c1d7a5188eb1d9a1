"""Input pipeline: grain over TFDS array_record data sources, with the view protocols.

  source = open_source(config.data, 'train')      # PNGs stay encoded (SkipDecoding)
  it = iter(train_dataset(config))                # endless, shuffled, per-host batches
  state = it.get_state(); ...; it.set_state(state)  # resumes exactly the same batches
  for batch in eval_dataset(config, 'test', num_views=5): ...   # one pass, in order
  inputs = model_inputs(batch, config.model.volume_size)      # what the steps take

A batch is a dict of numpy arrays (B = per-host batch, n = views per example):
  images [B, n, S, S, 3] float32   normalised with data.mean / data.std, S = model.image_size
  mask   [B, n] bool               True = real view; False = zero padding (mixed view counts;
                                   with data.paired_views, objects 2i and 2i + 1 of a batch
                                   hold a fixed total of real views together: `pair_total`)
  views  [B, n] int32              which of the 24 views each slot holds (-1 = padding)
  voxels [B, 32, 32, 32] bool      occupancy (cast in the loss)
  label  [B] int32                 class index
  index  [B] int32                 record index in the split (-1 for eval padding)
  valid  [B] bool                  False only for the examples padding the last eval batch

Randomness is a pure function of (seed, epoch, record index) (training) or
(data.eval_seed, record index, n) (evaluation 'random' views), so any worker count,
thread count or restart draws the same views, crops, flips and colours.
Only the chosen views' PNGs are decoded; each goes through data/views.py (crop,
background, flip, resize, colour, normalisation).

data.num_workers > 0 (grain mp_prefetch) gives the same batches as 0, but needs absl flags
parsed first (main.py's app.run does it; grain reads one of its flags in the workers), and
its iterator state has another format: resume with the worker count you saved with.
"""

import functools
import math
import os
import sys
import threading
import time
from typing import Any, Sequence

from absl import logging
import grain
import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from refine3d_jax.data import features
from refine3d_jax.data import views as views_lib
from refine3d_jax.errors import DataError, NotFoundError

TRAIN_SPLIT = 'train'
EVAL_VIEWS = ('first_n', 'random')
_reader = threading.local()  # per reader thread: the nice value it has set


def lower_priority(nice: int) -> None:
  """Gives the calling reader thread Linux nice value `nice` (once per thread), so that on
  a CPU it takes the cycles the training step leaves idle instead of preempting the step's
  threads: a quick stage-3 batch costs about 107 ms of reader CPU beside a ~1 s step on the
  same 2 cores (BENCHMARKS.md, "low-priority readers"). Never the process's main thread
  (it dispatches the steps), never below the thread's current value (no privilege
  needed), and nothing off Linux, where the call would renice the whole process. A thread
  cannot raise its priority back, so a later pipeline at nice 0 relies on grain starting
  new reader threads for each iterator (it does: they inherit the main thread's value).
  Where the system refuses (a sandbox), the thread logs it once and reads on unchanged."""
  if (
    not nice
    or getattr(_reader, 'nice', None) == nice
    or threading.current_thread() is threading.main_thread()
    or not sys.platform.startswith('linux')
  ):
    return
  _reader.nice = nice
  tid = threading.get_native_id()
  try:
    os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
  except OSError as e:  # a speed-up only: the batches are the same either way
    logging.warning('data.reader_nice=%d: reader thread priority unchanged (%s)', nice, e)


def reader_nice(data: ml_collections.ConfigDict) -> int:
  """data.reader_nice where JAX computes on the CPU, whose cores the readers share with the
  steps; 0 beside an accelerator, where niced readers would only lose to other processes'
  threads (not measured there)."""
  return data.reader_nice if jax.default_backend() == 'cpu' else 0


class SkipDecoding(tfds.decode.SkipDecoding):
  """Keeps a feature encoded: `images` stays 24 PNG byte strings. TFDS 4.9.10's own
  SkipDecoding fails on the numpy (no TensorFlow) path; this override does not."""

  def decode_batch_example_np(self, example):
    return example


def dataset_dir(dataset: str, builder_config: str, data_dir: str) -> str:
  """`<data_dir>/<dataset>/<config>/<version>`; builder_config '' = the builder's default."""
  from refine3d_jax.data import build  # pylint: disable=g-import-not-at-top

  cls = build.builder_class(dataset)
  if not builder_config and cls.BUILDER_CONFIGS:
    builder_config = cls.default_builder_config.name
  return os.path.join(os.path.expanduser(data_dir), dataset, builder_config or '', str(cls.VERSION))


def split_names(data: ml_collections.ConfigDict) -> list[str]:
  """The built splits of `data.dataset` (FileNotFoundError, as open_source, if unbuilt)."""
  path = dataset_dir(data.dataset, data.builder_config, data.data_dir)
  if not os.path.isfile(os.path.join(path, 'dataset_info.json')):
    open_source(data, 'train')  # raises the "not built; build it with ..." error
  return sorted(tfds.builder_from_directory(path).info.splits)


def open_source(data: ml_collections.ConfigDict, split: str) -> Sequence[dict[str, Any]]:
  """The random-access data source of `split` of `data.dataset`, images left as PNG bytes.

  Raises FileNotFoundError (saying how to build it) when the dataset is not built, and
  ValueError naming the available splits for an unknown split.
  """
  path = dataset_dir(data.dataset, data.builder_config, data.data_dir)
  if not os.path.isfile(os.path.join(path, 'dataset_info.json')):
    config_flag = f' --builder_config={data.builder_config}' if data.builder_config else ''
    raise NotFoundError(
      f'dataset {data.dataset} is not built in {path} (config.data.data_dir = '
      f'{data.data_dir!r}); build it with: python -m refine3d_jax.data.build '
      f'--dataset={data.dataset}{config_flag} --data_dir={data.data_dir} '
      '(shapenet_r2n2 and shapenet_vox also need --manual_dir=<extracted ShapeNet>)'
    )
  builder = tfds.builder_from_directory(path)
  if split not in builder.info.splits:
    raise DataError(f'{path} has no split {split!r}; it has {sorted(builder.info.splits)}')
  return builder.as_data_source(split, decoders={'images': SkipDecoding()})


def make_example(
  example: dict[str, Any],
  record: int,
  views: Sequence[int],
  max_views: int,
  opts: views_lib.ViewOptions,
  rng: np.random.Generator | None,
) -> dict[str, np.ndarray]:
  """One source example -> model inputs with `views` decoded, padded to `max_views`.

  Returns images [max_views, S, S, 3] float32 (zeros past len(views)), mask [max_views]
  bool, views [max_views] int32 (-1 past len(views)), voxels [32, 32, 32] bool,
  label / index int32, valid bool.
  """
  s = opts.image_size
  images = np.zeros((max_views, s, s, 3), np.float32)
  view_ids = np.full(max_views, -1, np.int32)
  view_ids[: len(views)] = views
  obj = views_lib.sample_object_params(opts, rng)
  for i, view in enumerate(views):
    params = views_lib.sample_view_params(opts, rng)
    pixels = views_lib.view_pixels(views_lib.decode_view(example, int(view)), opts, params)
    images[i] = views_lib.finish_view(pixels, opts, params, obj)
  return {
    'images': images,
    'mask': np.arange(max_views) < len(views),
    'views': view_ids,
    'voxels': np.asarray(example['voxels'], bool),
    'label': np.int32(example['label']),
    'index': np.int32(record),
    'valid': np.bool_(True),
  }


def padding_example(max_views: int, image_size: int) -> dict[str, np.ndarray]:
  """A filler for the last eval batch: zero images, only view 0 marked real (the model
  needs one real view per object to stay finite), valid False, index -1."""
  return {
    'images': np.zeros((max_views, image_size, image_size, 3), np.float32),
    'mask': np.arange(max_views) < 1,
    'views': np.where(np.arange(max_views) < 1, 0, -1).astype(np.int32),
    'voxels': np.zeros((features.VOXEL_SIZE,) * 3, bool),
    'label': np.int32(0),
    'index': np.int32(-1),
    'valid': np.bool_(False),
  }


def eval_views(protocol: str, num_views: int, seed: int, record: int) -> np.ndarray:
  """int [num_views] distinct view indices: 'first_n' = 0..n-1; 'random' = a draw seeded
  by (seed, record, num_views), the same every time."""
  if protocol == 'first_n':
    return np.arange(num_views)
  if protocol == 'random':
    rng = np.random.default_rng([seed, record, num_views])
    return rng.choice(features.NUM_VIEWS, num_views, replace=False)
  raise ValueError(f'unknown eval views protocol {protocol!r}; use one of {EVAL_VIEWS}')


def pair_total(config: ml_collections.ConfigDict, multi: bool) -> int:
  """Real views per pair of objects (2i, 2i + 1) in the batches of a stage with (`multi`)
  or without multi-view batches: data.min_views + train.num_views when data.paired_views
  draws the counts in pairs, else 0 (counts drawn per object, or fixed)."""
  d = config.data
  return d.min_views + config.train.num_views if multi and d.paired_views and d.min_views else 0


def check_pairs(mask: np.ndarray, total: int) -> None:
  """Raises DataError unless every pair of objects (2i, 2i + 1) of `mask [B, n]` has
  `total` real views (what a step that encodes only the real views relies on)."""
  counts = np.asarray(mask).reshape(-1, 2 * mask.shape[1]).sum(axis=1)
  if (counts != total).any():
    raise DataError(
      f'data.paired_views: a pair of objects has {counts.tolist()} real views, not {total}'
    )


def _view_count(
  index: int,
  rng: np.random.Generator,
  seed: int,
  epoch_length: int,
  views: tuple[int, int, bool],
  shard_index: int = 0,
) -> int:
  """Real views of element `index` of this host's stream: `max_views`, or drawn from
  [min_views, max_views]; when `paired`, element 2i draws k and element 2i + 1 takes
  min_views + max_views - k (each uniform as before, the pair's total fixed; every host
  draws its own k)."""
  min_views, max_views, paired = views
  if not min_views:
    return max_views
  if not paired:
    return int(rng.integers(min_views, max_views + 1))
  epoch, position = divmod(index, epoch_length)
  pair_rng = np.random.default_rng([seed, epoch, shard_index, position // 2, 1])
  k = int(pair_rng.integers(min_views, max_views + 1))
  return k if position % 2 == 0 else min_views + max_views - k


def _train_element(
  index: int,
  record: int,
  *,
  source,
  opts: views_lib.ViewOptions,
  seed: int,
  epoch_length: int,
  min_views: int,
  max_views: int,
  paired: bool = False,
  shard_index: int = 0,
  reader_nice: int = 0,
) -> dict[str, np.ndarray]:
  """Element `index` of the endless shuffled stream (record `record`)."""
  lower_priority(reader_nice)
  rng = np.random.default_rng([seed, index // epoch_length, int(record)])
  n = _view_count(index, rng, seed, epoch_length, (min_views, max_views, paired), shard_index)
  views = rng.choice(features.NUM_VIEWS, n, replace=False)
  return make_example(source[int(record)], int(record), views, max_views, opts, rng)


def _eval_element(
  position: int,
  *,
  source,
  opts: views_lib.ViewOptions,
  views_protocol: str,
  seed: int,
  num_views: int,
  shard_index: int,
  shard_count: int,
  reader_nice: int = 0,
) -> dict[str, np.ndarray]:
  lower_priority(reader_nice)
  record = shard_index + position * shard_count
  if record >= len(source):
    return padding_example(num_views, opts.image_size)
  views = eval_views(views_protocol, num_views, seed, record)
  return make_example(source[record], record, views, num_views, opts, None)


def shard(shard_index: int | None = None, shard_count: int | None = None) -> tuple[int, int]:
  """(index, count) of this host's shard: jax.process_index()/process_count() by default."""
  if shard_index is None or shard_count is None:
    import jax  # pylint: disable=g-import-not-at-top

    shard_index, shard_count = jax.process_index(), jax.process_count()
  if not 0 <= shard_index < shard_count:
    raise ValueError(f'shard_index {shard_index} not in [0, {shard_count})')
  return shard_index, shard_count


def per_host_batch(global_batch: int, shard_count: int) -> int:
  """Examples per host and step; raises unless `global_batch` splits evenly."""
  if global_batch % shard_count:
    raise DataError(
      f'config.train.batch_size = {global_batch} does not divide over {shard_count} hosts'
    )
  return global_batch // shard_count


def _iterate(ds: grain.MapDataset, data: ml_collections.ConfigDict) -> grain.IterDataset:
  ds = ds.to_iter_dataset(
    grain.ReadOptions(num_threads=data.num_threads, prefetch_buffer_size=data.prefetch)
  )
  if data.num_workers:
    ds = ds.mp_prefetch(
      grain.MultiprocessingOptions(
        num_workers=data.num_workers, per_worker_buffer_size=data.prefetch
      )
    )
  return ds


def train_dataset(
  config: ml_collections.ConfigDict,
  *,
  source=None,
  shard_index: int | None = None,
  shard_count: int | None = None,
  views: tuple[int, int] | None = None,
) -> grain.IterDataset:
  """Endless training batches of this host's shard of the train split.

  Each epoch reshuffles the shard (seed config.seed + epoch) and drops its last partial
  batch. Per-host batch = config.train.batch_size / shard_count; views per example =
  max_views, or drawn from [min_views, max_views] and padded (mask False) when
  min_views > 0, where (min_views, max_views) = `views`, by default
  (data.min_views, train.num_views); with data.paired_views, drawn in pairs of a fixed
  total (`pair_total`). `iter(...)` gives a grain DatasetIterator with get_state() /
  set_state().
  """
  min_views, max_views = views or (config.data.min_views, config.train.num_views)
  shard_index, shard_count = shard(shard_index, shard_count)
  batch = per_host_batch(config.train.batch_size, shard_count)
  paired = bool(config.data.paired_views and min_views)
  if paired and batch % 2:
    raise DataError(
      f'data.paired_views needs an even batch per host; config.train.batch_size = '
      f'{config.train.batch_size} over {shard_count} hosts is {batch}'
    )
  source = open_source(config.data, TRAIN_SPLIT) if source is None else source
  records = grain.MapDataset.range(len(source))[shard_index::shard_count]
  if len(records) < batch:
    raise DataError(
      f'shard {shard_index}/{shard_count} of the train split has '
      f'{len(records)} examples, fewer than one batch of {batch}'
    )
  element = functools.partial(
    _train_element,
    source=source,
    opts=views_lib.view_options(config, train=True),
    seed=config.seed,
    epoch_length=len(records),
    min_views=min_views,
    max_views=max_views,
    paired=paired,
    shard_index=shard_index,
    reader_nice=reader_nice(config.data),
  )
  ds = records.shuffle(seed=config.seed).map_with_index(element)
  return _iterate(ds.batch(batch, drop_remainder=True).repeat(), config.data)


def steps_per_epoch(
  config: ml_collections.ConfigDict, num_examples: int, shard_count: int = 1
) -> int:
  """Training steps per epoch over a split of `num_examples` (the smallest shard)."""
  return (num_examples // shard_count) // per_host_batch(config.train.batch_size, shard_count)


def run_steps(
  config: ml_collections.ConfigDict, num_examples: int, shard_count: int = 1
) -> tuple[int, int]:
  """(steps per epoch, steps of the whole run) of config.train over a training split of
  `num_examples`: `train.steps_per_epoch` and `train.num_steps` where set (> 0)."""
  t = config.train
  per_epoch = t.steps_per_epoch or steps_per_epoch(config, num_examples, shard_count)
  return per_epoch, t.num_steps or t.num_epochs * per_epoch


def eval_dataset(
  config: ml_collections.ConfigDict,
  split: str,
  num_views: int,
  *,
  batch_size: int | None = None,
  source=None,
  shard_index: int | None = None,
  shard_count: int | None = None,
) -> grain.IterDataset:
  """One in-order pass over this host's shard of `split`, `num_views` views per object
  chosen by config.data.eval_views. Every batch is full (batch_size, default
  config.train.batch_size, per host); the last is padded with `valid` False examples, and
  every host gets the same number of batches (shards padded to the largest)."""
  shard_index, shard_count = shard(shard_index, shard_count)
  batch = batch_size or per_host_batch(config.train.batch_size, shard_count)
  source = open_source(config.data, split) if source is None else source
  per_host = math.ceil(len(source) / shard_count)
  element = functools.partial(
    _eval_element,
    source=source,
    opts=views_lib.view_options(config, train=False),
    views_protocol=config.data.eval_views,
    seed=config.data.eval_seed,
    num_views=num_views,
    shard_index=shard_index,
    shard_count=shard_count,
    reader_nice=reader_nice(config.data),
  )
  ds = grain.MapDataset.range(math.ceil(per_host / batch) * batch).map(element)
  return _iterate(ds.batch(batch), config.data)


def model_inputs(batch: dict, volume_size: int) -> dict:
  """The arrays the steps use; voxels max-pooled to the model's volume when it is smaller
  than the data's 32^3 (a coarser model, e.g. for fast tests)."""
  voxels = np.asarray(batch['voxels'])
  f = voxels.shape[1] // volume_size
  if f > 1:
    b, s = voxels.shape[0], volume_size
    voxels = voxels.reshape(b, s, f, s, f, s, f).max(axis=(2, 4, 6))
  return {'images': batch['images'], 'mask': batch['mask'], 'voxels': voxels}


def examples_per_second(
  config: ml_collections.ConfigDict,
  num_views: int,
  num_batches: int = 20,
  warmup: int = 2,
  source=None,
) -> float:
  """Training-pipeline throughput (examples/s, one host) with `num_views` views each,
  timed over `num_batches` batches after `warmup` batches (worker start-up excluded)."""
  it = iter(
    train_dataset(config, source=source, shard_index=0, shard_count=1, views=(0, num_views))
  )
  try:
    for _ in range(warmup):
      next(it)
    start = time.perf_counter()
    count = sum(len(next(it)['index']) for _ in range(num_batches))
    return count / (time.perf_counter() - start)
  finally:
    if hasattr(it, 'close'):
      it.close()
