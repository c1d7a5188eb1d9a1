"""Tests for the shapenet_r2n2 TFDS builder, built from the real sample and tiny fake dirs."""

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from refine3d_jax.data import binvox
from refine3d_jax.data.shapenet_r2n2 import ShapenetR2n2
from refine3d_jax.data.shapenet_r2n2 import splits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.abspath(os.path.join(ROOT, '..', 'shared', 'shapenet_r2n2_sample', 'paired'))
SAMPLE_SPLIT = os.path.abspath(
  os.path.join(ROOT, '..', 'shared', 'shapenet_extra', 'splits', 'sample_paired_ShapeNet.json')
)
pytestmark = pytest.mark.skipif(
  not os.path.isdir(SAMPLE), reason=f'real ShapeNet sample not found at {SAMPLE}'
)
CHAIR = '03001627'
CHAIRS = (
  '1a38407b3036795d19fb4103277a6b93',
  '1a6f615e8b1b5ae4dbbc9440457e303e',
  '1a74a83fa6d24b3cacd67ce2c72c02e',
)


def independent_decode(path):
  """Plain numpy RLE expansion of a binvox file, transposed (0, 2, 1)."""
  with open(path, 'rb') as f:
    header, rest = f.read().split(b'\ndata\n', 1)
  dims = [int(x) for x in header.split(b'\n')[1].split()[1:]]
  pairs = np.frombuffer(rest, np.uint8).reshape(-1, 2)
  return np.repeat(pairs[:, 0] == 1, pairs[:, 1]).reshape(dims).transpose(0, 2, 1)


def build(manual_dir, data_dir, config='r2n2', **kwargs):
  builder = ShapenetR2n2(
    config=config, data_dir=str(data_dir), file_format='array_record', **kwargs
  )
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
  )
  return builder


def copy_object(dst, synset, model_id, src=SAMPLE):
  for top in ('ShapeNetRendering', 'ShapeNetVox32'):
    shutil.copytree(
      os.path.join(src, top, synset, model_id), os.path.join(dst, top, synset, model_id)
    )
  for root, dirs, files in os.walk(dst):  # the shared sample is read-only
    for name in dirs + files:
      os.chmod(os.path.join(root, name), 0o755)


def write_split(path, ids_by_split, synset=CHAIR):
  split = [
    {
      'taxonomy_id': synset,
      'taxonomy_name': 'x',
      'train': [],
      'val': [],
      'test': [],
      **ids_by_split,
    }
  ]
  path.write_text(json.dumps(split))
  return str(path)


@pytest.fixture(scope='module')
def sample_build(tmp_path_factory):
  return build(SAMPLE, tmp_path_factory.mktemp('data'))


def test_sample_r2n2_build(sample_build):
  info = sample_build.info
  # r2n2 split: chairs 7 -> 5 train 2 test; bench 1, sofa 2 -> 1/1, watercraft 1 -> test;
  # validation carved from train: the last of the 5 train chairs (sofa has 1: none).
  counts = {s: v.num_examples for s, v in info.splits.items()}
  assert counts == {'train': 5, 'validation': 1, 'test': 5}
  assert info.features['label'].names == list(splits.NAMES)
  assert info.metadata['skipped_counts'] == {'train': {}, 'test': {}}
  assert info.metadata['validation_source'] == splits.CARVED_VALIDATION
  source = sample_build.as_data_source()
  seen = set()
  for split in ('train', 'validation', 'test'):
    for example in source[split]:
      synset, model_id = example['synset'].decode(), example['model_id'].decode()
      seen.add((synset, model_id))
      assert example['label'] == splits.SYNSETS.index(synset)
      vox_path = os.path.join(SAMPLE, 'ShapeNetVox32', synset, model_id, 'model.binvox')
      np.testing.assert_array_equal(example['voxels'], independent_decode(vox_path))
      rdir = os.path.join(SAMPLE, 'ShapeNetRendering', synset, model_id, 'rendering')
      images = np.stack(example['images'])
      assert images.shape == (24, 137, 137, 4) and images.dtype == np.uint8
      np.testing.assert_array_equal(images[7], np.asarray(Image.open(f'{rdir}/07.png')))
      camera = np.loadtxt(f'{rdir}/rendering_metadata.txt', dtype=np.float32)
      np.testing.assert_array_equal(example['camera'], camera)
      assert example['camera'].shape == (24, 5)
  sorted_chairs = sorted(m for s, m in seen if s == CHAIR)
  train_chairs = {m for ex in source['train'] for m in [ex['model_id'].decode()]}
  assert train_chairs >= set(sorted_chairs[:4]) and not train_chairs & set(sorted_chairs[4:])
  assert [ex['model_id'].decode() for ex in source['validation']] == [sorted_chairs[4]]
  assert len(seen) == 11


def test_the_r2n2_split_trains(sample_build, tmp_path):
  """The paper's split has no validation ids; the carved split lets the tiny preset train
  and evaluate (issue 16's check, in-process)."""
  from refine3d_jax import evaluate, train  # pylint: disable=g-import-not-at-top
  from tests.testutil import small_config  # pylint: disable=g-import-not-at-top

  root = sample_build.data_dir
  for _ in range(3):  # <root>/shapenet_r2n2/r2n2/<version>
    root = os.path.dirname(root)
  config = small_config(root, num_steps=2)
  config.data.update(dataset='shapenet_r2n2', builder_config='r2n2')
  config.eval.view_counts = (1, 2)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  results = evaluate.run(workdir, progress=False)
  assert results['num_objects'] == 5 and set(results['views']) == {'1', '2'}


def test_validation_is_carved_only_when_missing():
  ids = {'train': [('a', m) for m in 'dbcae'] + [('b', 'z')], 'test': [('a', 'f')]}
  out, source = splits.with_validation(ids)
  assert source == splits.CARVED_VALIDATION
  assert out['validation'] == [('a', 'e')]  # the last of a's 5 sorted; b has 1: none
  assert out['train'] == [('a', m) for m in 'dbca'] + [('b', 'z')] and out['test'] == ids['test']
  given = {**ids, 'validation': [('a', 'g')]}
  assert splits.with_validation(given) == (given, 'the split source')
  emptied = {**ids, 'validation': []}  # the source's own, all missing: not carved
  assert splits.with_validation(emptied) == (emptied, 'the split source')
  lone = {'train': [('a', 'x'), ('b', 'y')], 'test': []}
  assert 'validation' not in splits.with_validation(lone)[0]


def test_custom_split_file_and_5class(tmp_path):
  builder = build(SAMPLE, tmp_path, config='pix2vox_5class', split_file=SAMPLE_SPLIT)
  counts = {s: v.num_examples for s, v in builder.info.splits.items()}
  assert counts == {'train': 2, 'validation': 1, 'test': 6}  # sofas are not among the 5 classes
  labels = {ex['label'] for ex in builder.as_data_source()['train']}
  assert labels == {splits.NAMES.index('chair'), splits.NAMES.index('watercraft')}


def test_shipped_pix2vox_split():
  ids = splits.read_split_file(splits.PIX2VOX_SPLIT_FILE, splits.SYNSETS)
  assert {s: len(v) for s, v in ids.items()} == {'train': 30643, 'validation': 4371, 'test': 8770}
  five = splits.read_split_file(splits.PIX2VOX_SPLIT_FILE, splits.FIVE_CLASS)
  assert {s for v in five.values() for s, _ in v} == set(splits.FIVE_CLASS)


def test_incomplete_objects_skipped_once_each(tmp_path, caplog):
  manual = tmp_path / 'manual'
  for model_id in CHAIRS:
    copy_object(manual, CHAIR, model_id)
  copy_object(manual, '04530566', '2a020ea3cd5e4fba37363131ac7e8139')
  empty_car = 'f9c1d7748c15499c6f2bd1c4e9adb41'
  os.makedirs(manual / 'ShapeNetRendering' / '02958343' / empty_car / 'rendering')
  shutil.rmtree(manual / 'ShapeNetVox32' / CHAIR / CHAIRS[1])
  os.remove(manual / 'ShapeNetRendering' / CHAIR / CHAIRS[2] / 'rendering' / '23.png')
  split_file = tmp_path / 'split.json'
  split_file.write_text(
    json.dumps(
      [
        {'taxonomy_id': CHAIR, 'train': list(CHAIRS) + ['0' * 32], 'test': [CHAIRS[0]]},
        {'taxonomy_id': '02958343', 'train': [empty_car], 'test': []},
        {'taxonomy_id': '04530566', 'train': [], 'test': ['2a020ea3cd5e4fba37363131ac7e8139']},
      ]
    )
  )
  with caplog.at_level(logging.WARNING):
    builder = build(manual, tmp_path / 'data', config='pix2vox', split_file=str(split_file))
  assert builder.info.splits['train'].num_examples == 1
  assert builder.info.splits['test'].num_examples == 2
  counts = builder.info.metadata['skipped_counts']
  assert counts['train'] == {
    'no_voxels': 1,
    'too_few_views': 1,
    'not_in_manual_dir': 1,
    'no_renderings': 1,
  }
  assert counts['test'] == {}
  assert builder.info.metadata['skipped_ids']['train']['no_renderings'] == [f'02958343/{empty_car}']
  for model_id in (empty_car, CHAIRS[1], CHAIRS[2], '0' * 32):
    assert sum(model_id in r.getMessage() for r in caplog.records) == 1, model_id
  # The metadata survives a reload from the directory.
  reloaded = tfds.builder_from_directory(builder.data_dir)
  assert reloaded.info.metadata['skipped_counts']['train']['no_voxels'] == 1


def test_empty_split_raises(tmp_path):
  manual = tmp_path / 'manual'
  copy_object(manual, CHAIR, CHAIRS[0])
  split_file = write_split(tmp_path / 's.json', {'train': [CHAIRS[0]], 'test': ['f' * 32]})
  with pytest.raises(ValueError, match=r"\['test'\].*would be empty"):
    build(manual, tmp_path / 'data', config='pix2vox', split_file=split_file)


@pytest.mark.parametrize('broken', ['png', 'png_size', 'binvox', 'binvox_dims', 'camera'])
def test_corrupt_files_raise_naming_the_file(tmp_path, broken):
  manual = tmp_path / 'manual'
  copy_object(manual, CHAIR, CHAIRS[0])
  rdir = manual / 'ShapeNetRendering' / CHAIR / CHAIRS[0] / 'rendering'
  vox = manual / 'ShapeNetVox32' / CHAIR / CHAIRS[0] / 'model.binvox'
  if broken == 'png':
    bad, data = rdir / '05.png', (rdir / '05.png').read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    match = 'corrupt PNG'
  elif broken == 'png_size':
    bad, buf = rdir / '05.png', io.BytesIO()
    Image.new('RGB', (64, 64)).save(buf, 'PNG')
    bad.write_bytes(buf.getvalue())
    match = '137x137 RGBA'
  elif broken == 'binvox':
    bad = vox
    bad.write_bytes(vox.read_bytes()[:-3])
    match = 'truncated'
  elif broken == 'binvox_dims':
    bad = vox
    binvox.write_binvox(vox, np.ones((16, 16, 16), bool))
    match = '32\\^3'
  else:
    bad = rdir / 'rendering_metadata.txt'
    bad.write_text('\n'.join(bad.read_text().splitlines()[:20]))
    match = '24 lines'
  split_file = write_split(tmp_path / 's.json', {'train': [CHAIRS[0]]})
  with pytest.raises(ValueError, match=match) as e:
    build(manual, tmp_path / 'data', config='pix2vox', split_file=split_file)
  assert str(bad) in str(e.value)


def test_unknown_category_raises(tmp_path):
  split_file = write_split(tmp_path / 's.json', {'train': [CHAIRS[0]]}, synset='12345678')
  with pytest.raises(ValueError, match='unknown category id.*12345678'):
    build(SAMPLE, tmp_path / 'data', config='pix2vox', split_file=split_file)


def test_missing_manual_dir_raises(tmp_path):
  missing = tmp_path / 'nowhere'
  with pytest.raises(FileNotFoundError, match='ShapeNetRendering.tgz') as e:
    build(missing, tmp_path / 'data')
  assert str(missing) in str(e.value)
  (tmp_path / 'wrong').mkdir()
  (tmp_path / 'wrong' / 'x.txt').write_text('x')
  with pytest.raises(FileNotFoundError, match='neither ShapeNetRendering'):
    build(tmp_path / 'wrong', tmp_path / 'data')


def test_read_back_without_our_package_or_tensorflow(sample_build, tmp_path):
  script = textwrap.dedent("""
      import sys
      import numpy as np
      import tensorflow_datasets as tfds

      class SkipDecoding(tfds.decode.SkipDecoding):  # TFDS 4.9.10 lacks the numpy batch path
        def decode_batch_example_np(self, example):
          return example

      builder = tfds.builder_from_directory(sys.argv[1])
      source = builder.as_data_source()
      example = source['test'][0]
      assert np.stack(example['images']).shape == (24, 137, 137, 4)
      assert example['voxels'].shape == (32, 32, 32) and example['voxels'].dtype == bool
      raw = builder.as_data_source(decoders={'images': SkipDecoding()})['test'][0]
      assert len(raw['images']) == 24 and raw['images'][0].startswith(b'\\x89PNG')
      assert raw['model_id'] == example['model_id']
      assert builder.info.metadata['skipped_counts'] == {'train': {}, 'test': {}}
      by_name = tfds.data_source('shapenet_r2n2/r2n2', data_dir=sys.argv[2], split='test',
                                 decoders={'images': SkipDecoding()})
      assert len(by_name) == 5 and by_name[0]['model_id'] == example['model_id']
      assert 'refine3d_jax' not in sys.modules and 'tensorflow' not in sys.modules
      print('OK', len(source['train']), len(source['test']))
  """)
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  data_dir = str(sample_build.data_dir)
  root = os.path.dirname(os.path.dirname(os.path.dirname(data_dir)))
  result = subprocess.run(
    [sys.executable, '-c', script, data_dir, root],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'OK 5 5' in result.stdout
