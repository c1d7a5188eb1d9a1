"""ShapeNet (3D-R2N2) categories and train/val/test splits, keyed on (synset, model_id),
and what the two ShapeNet builders share about them (`SplitFileBuilder`)."""

import gzip
import json
import math
import os
import pathlib
from typing import Callable, Iterable, Sequence

import tensorflow_datasets as tfds

from refine3d_jax.data import features
from refine3d_jax.errors import DataError

# The 13 R2N2 classes in synset order; label i is CATEGORIES[i] everywhere.
CATEGORIES = (
  ('02691156', 'aeroplane'),
  ('02828884', 'bench'),
  ('02933112', 'cabinet'),
  ('02958343', 'car'),
  ('03001627', 'chair'),
  ('03211117', 'display'),
  ('03636649', 'lamp'),
  ('03691459', 'speaker'),
  ('04090263', 'rifle'),
  ('04256520', 'sofa'),
  ('04379243', 'table'),
  ('04401088', 'telephone'),
  ('04530566', 'watercraft'),
)
SYNSETS = tuple(s for s, _ in CATEGORIES)
NAMES = tuple(n for _, n in CATEGORIES)
# The Refine3DNet paper's 5 classes: aeroplane, bench, watercraft, lamp, chair.
FIVE_CLASS = ('02691156', '02828884', '04530566', '03636649', '03001627')
SPLITS = ('train', 'val', 'test')  # as ShapeNet.json names them
# ... and as TFDS (and synthetic_shapes) name them.
TFDS_SPLITS = {'train': 'train', 'val': 'validation', 'test': 'test'}
R2N2_TRAIN_FRACTION = 0.8
# A split source without validation ids (R2N2's split, a train/test-only file) gets one
# carved out of train, so that every build trains (training selects checkpoints on it).
VALIDATION_FRACTION = 0.05
CARVED_VALIDATION = (
  'carved from train: per class with 2 or more train objects, the last '
  f'{VALIDATION_FRACTION:.0%} (rounded up) of its sorted train model ids'
)
# Pix2Vox's datasets/ShapeNet.json (hzxie/Pix2Vox, MIT), ids only, gzipped.
PIX2VOX_SPLIT_FILE = pathlib.Path(__file__).parent / 'pix2vox_split.json.gz'

ObjectId = tuple[str, str]  # (synset, model_id)


def check_synsets(synsets: Iterable[str], where: str) -> None:
  """Raises ValueError naming any synset that is not one of the 13 R2N2 classes."""
  unknown = sorted(set(synsets) - set(SYNSETS))
  if unknown:
    raise DataError(
      f'{where}: unknown category id(s) {unknown}; known: '
      f'{", ".join(f"{s} {n}" for s, n in CATEGORIES)}'
    )


def read_split_file(path: str | os.PathLike, synsets: Sequence[str]) -> dict[str, list[ObjectId]]:
  """Reads a Pix2Vox-format split (ShapeNet.json, optionally .gz) restricted to `synsets`.

  Returns {split: [(synset, model_id), ...]} in file order, for the splits that have ids in
  the file (e.g. a file with only train and test ids gives no validation split); the file's
  'val' is returned as TFDS's 'validation'.
  """
  path = os.fspath(path)
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rt') as f:
      taxonomies = json.load(f)
    ids = {c['taxonomy_id']: c for c in taxonomies}
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise DataError(f'{path}: not a Pix2Vox-format split file ({e})') from e
  check_synsets(ids, path)
  present = [s for s in SPLITS if any(c.get(s) for c in taxonomies)]
  return {
    TFDS_SPLITS[split]: [(s, m) for s in synsets if s in ids for m in ids[s].get(split, [])]
    for split in present
  }


def r2n2_split(model_ids: dict[str, Sequence[str]]) -> dict[str, list[ObjectId]]:
  """R2N2 split: per class, the first 80% of the sorted model ids train, the rest test.

  `model_ids` maps synset -> model ids found for it (any order).
  """
  out: dict[str, list[ObjectId]] = {'train': [], 'test': []}
  for synset, ids in model_ids.items():
    ids = sorted(ids)
    n_train = int(len(ids) * R2N2_TRAIN_FRACTION)
    out['train'] += [(synset, m) for m in ids[:n_train]]
    out['test'] += [(synset, m) for m in ids[n_train:]]
  return out


def wanted_ids(
  split_kind: str,
  split_file: str | os.PathLike | None,
  synsets: Sequence[str],
  list_ids: Callable[[str], Sequence[str]],
  dataset: str,
) -> dict[str, list[ObjectId]]:
  """The ids each split asks for, before any is checked: `split_kind` 'r2n2' splits each
  synset's ids (`list_ids(synset)`) 80/20 (`r2n2_split`); 'pix2vox' reads `split_file`
  (default: the shipped ShapeNet.json). A split file with 'r2n2' is a DataError."""
  if split_kind == 'r2n2':
    if split_file is not None:
      raise DataError(f'--split_file applies to the pix2vox configs of {dataset}, not r2n2')
    return r2n2_split({s: list_ids(s) for s in synsets})
  return read_split_file(split_file or PIX2VOX_SPLIT_FILE, synsets)


def split_source(split_kind: str, split_file: str | os.PathLike | None) -> str:
  """Where a build's split came from, for its metadata."""
  if split_kind == 'r2n2':
    return 'r2n2 80/20'
  return os.fspath(split_file or 'shipped Pix2Vox ShapeNet.json')


def with_validation(ids: dict[str, list[ObjectId]]) -> tuple[dict[str, list[ObjectId]], str]:
  """(`ids` with a 'validation' split, where it came from). A split source's own validation
  ids are kept; otherwise validation is CARVED_VALIDATION (deterministic; train keeps the
  rest in its order), or absent when no class has 2 train objects."""
  if 'validation' in ids:  # the source's own (a build stops if none of them is present)
    return ids, 'the split source'
  by_class: dict[str, list[str]] = {}
  for synset, model_id in ids.get('train', []):
    by_class.setdefault(synset, []).append(model_id)
  carved = set()
  for synset, model_ids in by_class.items():
    model_ids = sorted(model_ids)
    n = math.ceil(len(model_ids) * VALIDATION_FRACTION) if len(model_ids) >= 2 else 0
    carved.update((synset, m) for m in model_ids[len(model_ids) - n :])
  if not carved:  # no class has 2 train objects: nothing to carve, no validation split
    return ids, 'none (no class has 2 or more train objects to carve one from)'
  out = dict(ids)
  out['train'] = [x for x in ids['train'] if x not in carved]
  out['validation'] = [x for x in ids['train'] if x in carved]
  return out, CARVED_VALIDATION


class SplitFileBuilder:
  """What the ShapeNet builders share, mixed in before tfds' GeneratorBasedBuilder: the
  `split_file` argument (a Pix2Vox-format ShapeNet.json, or .json.gz, replacing the shipped
  one), array_record files by default, and the info (features over the 13 R2N2 classes,
  the class's DESCRIPTION and CITATION)."""

  DESCRIPTION = ''
  CITATION = ''
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
    '1.1.0': 'Splits without validation ids (r2n2 configs, a train/test split file) get a '
    'validation split carved out of train (CARVED_VALIDATION); Pix2Vox-split builds are unchanged.',
  }

  def __init__(self, *, split_file: str | os.PathLike | None = None, file_format=None, **kwargs):
    self._split_file = split_file
    super().__init__(file_format=file_format or 'array_record', **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=self.DESCRIPTION,
      features=features.features(NAMES),
      homepage='https://cvgl.stanford.edu/3d-r2n2/',
      citation=self.CITATION,
      metadata=tfds.core.MetadataDict(),
    )
