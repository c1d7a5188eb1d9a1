"""ShapeNet (3D-R2N2) categories and train/val/test splits, keyed on (synset, model_id)."""

import gzip
import json
import os
import pathlib
from typing import Iterable, Sequence

from refine3d_jax.data.errors import DataError

# The 13 R2N2 classes in synset order; label i is CATEGORIES[i] everywhere.
CATEGORIES = (
    ('02691156', 'aeroplane'), ('02828884', 'bench'), ('02933112', 'cabinet'),
    ('02958343', 'car'), ('03001627', 'chair'), ('03211117', 'display'),
    ('03636649', 'lamp'), ('03691459', 'speaker'), ('04090263', 'rifle'),
    ('04256520', 'sofa'), ('04379243', 'table'), ('04401088', 'telephone'),
    ('04530566', 'watercraft'))
SYNSETS = tuple(s for s, _ in CATEGORIES)
NAMES = tuple(n for _, n in CATEGORIES)
# The Refine3DNet paper's 5 classes: aeroplane, bench, watercraft, lamp, chair.
FIVE_CLASS = ('02691156', '02828884', '04530566', '03636649', '03001627')
SPLITS = ('train', 'val', 'test')  # as ShapeNet.json names them
# ... and as TFDS (and synthetic_shapes) name them.
TFDS_SPLITS = {'train': 'train', 'val': 'validation', 'test': 'test'}
R2N2_TRAIN_FRACTION = 0.8
# Pix2Vox's datasets/ShapeNet.json (hzxie/Pix2Vox, MIT), ids only, gzipped.
PIX2VOX_SPLIT_FILE = pathlib.Path(__file__).parent / 'pix2vox_split.json.gz'

ObjectId = tuple[str, str]  # (synset, model_id)


def check_synsets(synsets: Iterable[str], where: str) -> None:
  """Raises ValueError naming any synset that is not one of the 13 R2N2 classes."""
  unknown = sorted(set(synsets) - set(SYNSETS))
  if unknown:
    raise DataError(f'{where}: unknown category id(s) {unknown}; known: '
                     f'{", ".join(f"{s} {n}" for s, n in CATEGORIES)}')


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
  return {TFDS_SPLITS[split]: [(s, m) for s in synsets if s in ids for m in ids[s].get(split, [])]
          for split in present}


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
