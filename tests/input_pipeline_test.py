"""Tests for refine3d_jax.input_pipeline on a small built dataset (tests/data_fixtures.py)."""

import itertools
import os
import sys
import threading

from absl import flags
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import jtso
from refine3d_jax import configlib
from refine3d_jax import input_pipeline as ip
from refine3d_jax.data import build
from refine3d_jax.data import transforms
from refine3d_jax.data import views as views_lib
from refine3d_jax.errors import DataError
from tests.views_test import options


def make_config(built, preset='tiny', **data):
  dataset, builder_config, data_dir = built
  config = jtso.get_config(preset)
  config.data.update(
    dataset=dataset, builder_config=builder_config, data_dir=data_dir, num_threads=2, **data
  )
  configlib.validate(config)
  return config


@pytest.fixture(scope='module')
def sources(built_dataset):
  config = make_config(built_dataset)
  return {split: ip.open_source(config.data, split) for split in ('train', 'test')}


@pytest.fixture(scope='module')
def decoded_test(built_dataset):
  """The test split decoded by TFDS itself (uint8 [24, 137, 137, 4]): an independent check."""
  dataset, builder_config, data_dir = built_dataset
  return tfds.builder_from_directory(
    ip.dataset_dir(dataset, builder_config, data_dir)
  ).as_data_source('test')


def test_configs_name_the_same_datasets_and_protocols():
  assert configlib.DATASETS == build.DATASETS
  assert configlib.PROTOCOLS == tuple(transforms.PROTOCOLS)
  assert configlib.EVAL_VIEWS == ip.EVAL_VIEWS


@pytest.mark.parametrize(
  'protocol,size,train,norm',
  [
    ('r2n2_127', 127, True, 0.0),
    ('r2n2_127', 127, False, 0.0),
    ('pix2vox_224', 224, True, 0.5),
    ('pix2vox_224', 224, False, 0.5),
    ('r2n2_127', 64, True, 0.0),
    ('r2n2_127', 16, False, 0.0),
    ('pix2vox_224', 16, True, 0.5),
  ],
)
def test_shapes_dtypes_ranges(sources, protocol, size, train, norm):
  jitter = 0.4 if protocol == 'pix2vox_224' and train else 0.0
  opts = options(protocol, size, train, color_jitter=jitter, mean=(norm,) * 3, std=(1 - norm,) * 3)
  rng = np.random.default_rng(0) if train else None
  out = ip.make_example(sources['train'][0], 0, [3, 7], 3, opts, rng)
  assert out['images'].shape == (3, size, size, 3) and out['images'].dtype == np.float32
  real = out['images'][:2]
  lo, hi = -norm / (1 - norm), (1 - norm) / (1 - norm)
  assert lo <= real.min() < real.max() <= hi
  assert real.std() > 0.05  # not constant
  assert (out['images'][2] == 0).all()
  np.testing.assert_array_equal(out['mask'], [True, True, False])
  np.testing.assert_array_equal(out['views'], [3, 7, -1])
  assert out['voxels'].shape == (32, 32, 32) and out['voxels'].dtype == bool
  assert out['voxels'].any() and out['label'].dtype == np.int32


def find_crop(rgba, out):
  """All (top, left, flip) whose crop of `rgba` matches `out` uint8 [127, 127, 3] where the
  object is opaque (the background colour is unknown)."""
  found = []
  for top, left, flip in itertools.product(range(11), range(11), (False, True)):
    window = rgba[top : top + 127, left : left + 127]
    if flip:
      window = window[:, ::-1]
    opaque = window[..., 3] > 0
    if np.array_equal(window[..., :3][opaque], out[opaque]):
      found.append((top, left, flip))
  return found


def test_train_crops_flips_backgrounds(sources):
  example = sources['train'][2]
  opts = options(train=True)
  rng = np.random.default_rng(1)
  params = [views_lib.sample_view_params(opts, rng) for _ in range(400)]
  tops = {p.top for p in params} | {p.left for p in params}
  assert tops == set(range(10))  # offsets 0..9, all of them
  assert 0.3 < np.mean([p.flip for p in params]) < 0.7
  colours = np.array([p.background for p in params])
  assert colours.min() == 225 and colours.max() == 255
  # The whole pipeline, checked from its output: a crop at offset 0..9, sometimes flipped,
  # background in [225, 255] wherever alpha is 0.
  out = ip.make_example(example, 2, range(24), 24, opts, np.random.default_rng(2))
  flips = 0
  for v in range(24):
    rgba = views_lib.decode_view(example, v)
    pixels = np.round(out['images'][v] * 255).astype(np.uint8)
    (top, left, flip), *_ = find_crop(rgba, pixels)
    flips += flip
    window = rgba[top : top + 127, left : left + 127, 3]
    clear = (window[:, ::-1] if flip else window) == 0
    background = pixels[clear]
    assert (background >= 225).all() and (background == background[0]).all()
  assert 0 < flips < 24


def test_first_n_views_match_an_independent_decode(built_dataset, decoded_test):
  config = make_config(built_dataset, eval_views='first_n')
  config.model.image_size = 127
  batches = list(ip.eval_dataset(config, 'test', 3, batch_size=2, shard_index=0, shard_count=1))
  assert [len(b['index']) for b in batches] == [2, 2, 2]
  for batch in batches:
    for row, record in enumerate(batch['index']):
      if record < 0:
        continue
      np.testing.assert_array_equal(batch['views'][row], [0, 1, 2])
      for v in range(3):
        rgba = decoded_test[record]['images'][v][5:132, 5:132]
        expected = np.where(rgba[..., 3:] == 0, 240, rgba[..., :3]) / np.float32(255)
        np.testing.assert_allclose(batch['images'][row, v], expected, atol=1e-6)


def test_random_eval_views_repeatable_distinct_and_seeded(built_dataset):
  for record, n in itertools.product(range(5), (1, 5, 24)):
    views = ip.eval_views('random', n, 7, record)
    assert len(set(views.tolist())) == n and views.min() >= 0 and views.max() < 24
    np.testing.assert_array_equal(views, ip.eval_views('random', n, 7, record))
  draws = lambda seed: np.stack([ip.eval_views('random', 5, seed, r) for r in range(5)])
  assert not np.array_equal(draws(7), draws(8))
  run = lambda seed: next(
    iter(
      ip.eval_dataset(
        make_config(built_dataset, eval_views='random', eval_seed=seed),
        'test',
        5,
        shard_index=0,
        shard_count=1,
      )
    )
  )
  a, b, c = run(3), run(3), run(4)
  np.testing.assert_array_equal(a['images'], b['images'])
  assert not np.array_equal(a['views'], c['views'])


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_train_batches_and_no_repeated_views(built_dataset):
  config = make_config(built_dataset)
  config.train.batch_size, config.train.num_views = 4, 5
  batches = take(iter(ip.train_dataset(config, shard_index=0, shard_count=1)), 3)
  for batch in batches:
    assert batch['images'].shape == (4, 5, 16, 16, 3) and batch['mask'].all()
    assert batch['valid'].all()
    for views in batch['views']:
      assert len(set(views.tolist())) == 5
  # 6 examples, batch 4: each epoch is one batch of distinct records, reshuffled.
  epochs = [b['index'].tolist() for b in batches]
  assert all(len(set(e)) == 4 for e in epochs) and len({tuple(e) for e in epochs}) > 1


def test_pad_and_mask_mode(built_dataset):
  config = make_config(built_dataset, min_views=1)
  config.train.batch_size, config.train.num_views = 5, 4
  batch = take(iter(ip.train_dataset(config, shard_index=0, shard_count=1)), 3)[-1]
  counts = batch['mask'].sum(1)
  assert counts.min() >= 1 and counts.max() <= 4 and len(set(counts.tolist())) > 1
  for row, n in enumerate(counts):
    np.testing.assert_array_equal(batch['mask'][row], np.arange(4) < n)
    assert (batch['images'][row, n:] == 0).all() and (batch['views'][row, n:] == -1).all()
    assert (batch['images'][row, :n].reshape(n, -1).std(1) > 0).all()


def test_paired_views_fix_each_pairs_total(built_dataset):
  """data.paired_views: objects 2i and 2i + 1 hold min_views + num_views real views
  together, padded as before; check_pairs accepts them and refuses another total."""
  config = make_config(built_dataset, min_views=1, paired_views=True)
  config.train.batch_size, config.train.num_views = 4, 4
  assert ip.pair_total(config, True) == 5 and ip.pair_total(config, False) == 0
  batches = take(iter(ip.train_dataset(config, shard_index=0, shard_count=1)), 4)
  counts = np.stack([b['mask'].sum(1) for b in batches])
  assert (counts.reshape(4, 2, 2).sum(-1) == 5).all() and len(set(counts.ravel())) > 1
  for batch in batches:
    np.testing.assert_array_equal(batch['mask'], np.arange(4) < batch['mask'].sum(1)[:, None])
    ip.check_pairs(batch['mask'], 5)
    with pytest.raises(DataError, match='paired_views'):
      ip.check_pairs(batch['mask'], 6)
  config.train.batch_size = 3
  with pytest.raises(DataError, match='even batch per host'):
    ip.train_dataset(config, shard_index=0, shard_count=1)


def test_paired_view_counts_keep_each_objects_distribution():
  """Each position of a pair draws its count uniformly from [min_views, max_views], as
  unpaired draws do; only the pair's total is fixed."""
  rng = np.random.default_rng(0)
  counts = np.array([ip._view_count(i, rng, 3, 1000, (1, 8, True)) for i in range(8000)]).reshape(
    -1, 2
  )
  assert (counts.sum(1) == 9).all()
  for position in (0, 1):
    freq = np.bincount(counts[:, position], minlength=9)[1:] / len(counts)
    np.testing.assert_allclose(freq, 1 / 8, atol=0.02)
  assert ip._view_count(5, rng, 3, 1000, (0, 8, True)) == 8  # fixed counts stay fixed


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='thread nice values: Linux only')
def test_reader_threads_run_at_low_priority_and_the_main_thread_stays(tiny_data_dir, monkeypatch):
  """data.reader_nice: every element of a train or eval batch is made in a reader thread at
  that nice value (19: the step's threads come first); the main thread keeps its own."""
  tid = threading.get_native_id
  priority = lambda: os.getpriority(os.PRIO_PROCESS, tid())
  main_before = priority()
  # Each element is told apart by the nice value its pipeline asked for, not by its thread:
  # an earlier pass's or test's iterator may still make elements (prefetching) on its own
  # threads, old or new, during a pass.
  asked = threading.local()  # per thread: what its latest element's pipeline asked for
  lower_priority = ip.lower_priority
  monkeypatch.setattr(
    ip, 'lower_priority', lambda nice: setattr(asked, 'nice', nice) or lower_priority(nice)
  )
  seen = []  # (nice value asked for, the thread's nice value) per element made
  make_example = ip.make_example
  monkeypatch.setattr(
    ip,
    'make_example',
    lambda *a, **k: (
      seen.append((getattr(asked, 'nice', None), priority())) or make_example(*a, **k)
    ),
  )
  for nice in (19, 0):
    seen.clear()
    config = jtso.get_config('tiny')
    config.data.update(
      data_dir=tiny_data_dir, builder_config='tiny', num_threads=2, reader_nice=nice
    )
    config.train.batch_size = 4
    take(iter(ip.train_dataset(config, shard_index=0, shard_count=1)), 2)
    next(iter(ip.eval_dataset(config, 'test', 2)))
    mine = [p for wanted, p in list(seen) if wanted == nice]
    assert len(mine) >= 12 and set(mine) == {max(nice, main_before)}
  assert priority() == main_before
  ip.lower_priority(19)  # called from the main thread: a no-op
  assert priority() == main_before
  done = []
  thread = threading.Thread(target=lambda: (ip.lower_priority(7), done.append(priority())))
  thread.start()
  thread.join()
  assert done == [max(7, main_before)]
  data = jtso.get_config('tiny').data
  assert ip.reader_nice(data) == 19  # these tests compute on the CPU
  monkeypatch.setattr(ip.jax, 'default_backend', lambda: 'gpu')
  assert ip.reader_nice(data) == 0


def test_iterator_state_round_trip(built_dataset):
  config = make_config(built_dataset)
  config.train.batch_size = 4
  it = iter(ip.train_dataset(config, shard_index=0, shard_count=1))
  take(it, 2)
  state = it.get_state()
  expected = take(it, 3)  # crosses epoch boundaries (one batch per epoch)
  resumed = iter(ip.train_dataset(config, shard_index=0, shard_count=1))
  resumed.set_state(state)
  for a, b in zip(expected, take(resumed, 3)):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  config.seed = 1
  other = take(iter(ip.train_dataset(config, shard_index=0, shard_count=1)), 5)
  assert any(not np.array_equal(a['images'], b['images']) for a, b in zip(expected, other[2:]))


def test_two_hosts_get_disjoint_shards_covering_the_split(built_dataset):
  config = make_config(built_dataset)
  config.train.batch_size = 2  # 1 per host
  seen = []
  for host in (0, 1):
    steps = ip.steps_per_epoch(config, 5, shard_count=2)
    batches = take(iter(ip.train_dataset(config, shard_index=host, shard_count=2)), steps)
    seen.append({int(b['index'][0]) for b in batches})
    assert all(len(b['index']) == 1 for b in batches)
  # 5 records over 2 hosts: each host's epoch is 2 of its own shard ({0, 2, 4} or {1, 3})
  assert not seen[0] & seen[1] and seen[0] | seen[1] <= set(range(5))
  assert len(seen[0]) == len(seen[1]) == steps == 2
  evals = [
    list(ip.eval_dataset(config, 'test', 2, batch_size=2, shard_index=h, shard_count=2))
    for h in (0, 1)
  ]
  assert len(evals[0]) == len(evals[1])  # every host runs the same number of steps
  records = [{int(i) for b in e for i, ok in zip(b['index'], b['valid']) if ok} for e in evals]
  assert not records[0] & records[1] and records[0] | records[1] == set(range(5))
  with pytest.raises(ValueError, match='does not divide'):
    ip.per_host_batch(3, 2)


def test_corrupt_png_names_object_and_view(sources):
  example = dict(sources['train'][0])
  images = list(example['images'])
  images[2] = images[2][:300]
  example['images'] = np.array(images, dtype=object)
  ok = ip.make_example(example, 0, [0, 1], 2, options(), None)  # view 02 never decoded
  assert ok['mask'].all()
  name = f'{example["synset"].decode()}/{example["model_id"].decode()}'
  with pytest.raises(ValueError, match=f'object {name} view 02: corrupt PNG'):
    ip.make_example(example, 0, [0, 2], 2, options(), None)


def test_missing_dataset_says_how_to_build(tmp_path):
  config = jtso.get_config('tiny')
  config.data.update(dataset='shapenet_r2n2', builder_config='r2n2', data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError) as error:
    ip.open_source(config.data, 'train')
  message = str(error.value)
  assert str(tmp_path / 'shapenet_r2n2' / 'r2n2' / '1.1.0') in message
  assert (
    f'python -m refine3d_jax.data.build --dataset=shapenet_r2n2 --builder_config=r2n2 '
    f'--data_dir={tmp_path}'
  ) in message


def test_unknown_split(built_dataset):
  with pytest.raises(ValueError, match="no split 'val'"):
    ip.open_source(make_config(built_dataset).data, 'val')


def test_examples_per_second(built_dataset):
  config = make_config(built_dataset)
  config.train.batch_size = 2
  assert ip.examples_per_second(config, 2, num_batches=3, warmup=1) > 0


def test_worker_processes_give_the_same_batches_and_resume(built_dataset):
  # grain's mp_prefetch reads an absl flag: a real main() parses flags via app.run.
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  config = make_config(built_dataset)
  config.train.batch_size = 4
  expected = take(iter(ip.train_dataset(config, shard_index=0, shard_count=1)), 4)
  config.data.num_workers = 2
  it = iter(ip.train_dataset(config, shard_index=0, shard_count=1))
  got = take(it, 2)
  state = it.get_state()
  got += take(it, 2)
  it.close()
  resumed = iter(ip.train_dataset(config, shard_index=0, shard_count=1))
  resumed.set_state(state)
  got += take(resumed, 2)
  resumed.close()
  for a, b in zip(expected + expected[2:], got):
    np.testing.assert_array_equal(a['images'], b['images'])
    np.testing.assert_array_equal(a['index'], b['index'])


def test_quick_preset_on_synthetic_shapes(tiny_data_dir):
  """The default experiment's data path: synthetic_shapes through the quick preset's
  pipeline (64 px views), with no ShapeNet data involved."""
  config = jtso.get_config('quick')
  config.data.update(data_dir=tiny_data_dir, builder_config='tiny', num_threads=2)
  config.train.batch_size = 4
  configlib.validate(config)
  batch = next(iter(ip.train_dataset(config, shard_index=0, shard_count=1)))
  assert batch['images'].shape == (4, config.train.num_views, 64, 64, 3)
  assert batch['images'].dtype == np.float32
  assert 0 <= batch['images'].min() and batch['images'].max() <= 1
  # 1 to 8 real views per object (data.min_views = 1), then zero padding.
  counts = batch['mask'].sum(1)
  assert config.data.min_views == 1 and counts.min() >= 1 and counts.max() <= 8
  np.testing.assert_array_equal(batch['mask'], np.arange(8) < counts[:, None])
  assert not batch['images'][~batch['mask']].any()
  assert batch['voxels'].shape == (4, 32, 32, 32)
  assert all(batch['voxels'][i].sum() > 0 for i in range(4))
  test = next(iter(ip.eval_dataset(config, 'test', num_views=2)))
  assert test['images'].shape == (4, 2, 64, 64, 3)
  np.testing.assert_array_equal(test['views'], [[0, 1]] * 4)


def test_model_inputs_max_pool_the_voxels_to_the_model_volume():
  voxels = np.zeros((2, 32, 32, 32), bool)
  voxels[0, 3, 4, 5] = True
  batch = {
    'images': np.zeros((2, 1, 8, 8, 3), np.float32),
    'mask': np.ones((2, 1), bool),
    'voxels': voxels,
    'label': np.zeros(2, np.int32),
  }
  pooled = ip.model_inputs(batch, 16)
  assert set(pooled) == {'images', 'mask', 'voxels'}
  assert pooled['voxels'].shape == (2, 16, 16, 16) and pooled['voxels'].sum() == 1
  assert pooled['voxels'][0, 1, 2, 2]
  np.testing.assert_array_equal(ip.model_inputs(batch, 32)['voxels'], voxels)
