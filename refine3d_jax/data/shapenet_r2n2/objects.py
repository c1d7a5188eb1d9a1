"""Finding, checking and reading one ShapeNet (3D-R2N2) object from the official layout.

<manual_dir>/ShapeNetRendering/<synset>/<model_id>/rendering/{00..23}.png,
    rendering_metadata.txt (24 lines of 5 floats), renderings.txt
<manual_dir>/ShapeNetVox32/<synset>/<model_id>/model.binvox (32^3)
"""

import io
import os
from typing import Callable, Mapping, Sequence

from absl import logging

import numpy as np
from PIL import Image

from refine3d_jax.data import binvox
from refine3d_jax.data import features
from refine3d_jax.errors import DataError, NotFoundError

RENDERING = 'ShapeNetRendering'
VOXELS = 'ShapeNetVox32'
VIEW_NAMES = tuple(f'{v:02d}.png' for v in range(features.NUM_VIEWS))
CAMERA_FILE = 'rendering_metadata.txt'

# Why an object is skipped (these keys go into the dataset's metadata).
SKIP_REASONS = {
  'not_in_manual_dir': 'neither its renderings nor its voxels are in the manual dir',
  'no_renderings': 'its rendering folder is missing or empty',
  'too_few_views': f'it has fewer than {features.NUM_VIEWS} views',
  'no_camera': f'its {CAMERA_FILE} is missing',
  'no_voxels': 'its model.binvox is missing',
}


def rendering_dir(manual_dir: str, synset: str, model_id: str) -> str:
  """The folder holding the object's 24 PNGs and rendering_metadata.txt."""
  return os.path.join(manual_dir, RENDERING, synset, model_id, 'rendering')


def voxel_path(manual_dir: str, synset: str, model_id: str) -> str:
  """The object's model.binvox."""
  return os.path.join(manual_dir, VOXELS, synset, model_id, 'model.binvox')


def list_model_ids(manual_dir: str, synset: str) -> list[str]:
  """Sorted model ids with a folder under either ShapeNetRendering or ShapeNetVox32."""
  ids = set()
  for top in (RENDERING, VOXELS):
    folder = os.path.join(manual_dir, top, synset)
    if os.path.isdir(folder):
      ids.update(m for m in os.listdir(folder) if os.path.isdir(os.path.join(folder, m)))
  return sorted(ids)


def skip_reason(manual_dir: str, synset: str, model_id: str) -> str | None:
  """A key of SKIP_REASONS if the object cannot be built (file checks only), else None."""
  rdir = rendering_dir(manual_dir, synset, model_id)
  vpath = voxel_path(manual_dir, synset, model_id)
  if not (os.path.isdir(os.path.dirname(rdir)) or os.path.isdir(os.path.dirname(vpath))):
    return 'not_in_manual_dir'
  files = set(os.listdir(rdir)) if os.path.isdir(rdir) else set()
  if not any(f.endswith('.png') for f in files):
    return 'no_renderings'
  if not files.issuperset(VIEW_NAMES):
    return 'too_few_views'
  if CAMERA_FILE not in files:
    return 'no_camera'
  if not os.path.isfile(vpath):
    return 'no_voxels'
  return None


MAX_MISSING_WARNINGS = 20  # per split; a sample manual dir misses most split ids.


def check_objects(
  dataset: str,
  manual_dir: str,
  split: str,
  object_ids: Sequence[tuple[str, str]],
  reason_of: Callable[[str, str, str], str | None] = skip_reason,
  reasons: Mapping[str, str] = SKIP_REASONS,
) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
  """Splits `split`'s ids into buildable objects and skipped ones {reason: ['synset/id']}.

  `reason_of(manual_dir, synset, model_id)` is a key of `reasons` (its text is logged) or
  None. Warns once per skipped object, but about missing ones ('not_in_manual_dir') only
  for the first MAX_MISSING_WARNINGS, then in one summary line.
  """
  kept, skipped = [], {}
  for synset, model_id in object_ids:
    reason = reason_of(manual_dir, synset, model_id)
    if reason is None:
      kept.append((synset, model_id))
      continue
    skipped.setdefault(reason, []).append(f'{synset}/{model_id}')
    if reason != 'not_in_manual_dir' or len(skipped[reason]) <= MAX_MISSING_WARNINGS:
      logging.warning(
        '%s %s: skipping %s/%s: %s.', dataset, split, synset, model_id, reasons[reason]
      )
  missing = len(skipped.get('not_in_manual_dir', []))
  if missing > MAX_MISSING_WARNINGS:
    logging.warning(
      '%s %s: skipped %d split ids in all that are not in %s (warned about the first %d).',
      dataset,
      split,
      missing,
      manual_dir,
      MAX_MISSING_WARNINGS,
    )
  return kept, skipped


def read_png(path: str) -> bytes:
  """The PNG file's bytes, after checking it is a valid 137x137 RGBA PNG."""
  with open(path, 'rb') as f:
    data = f.read()
  try:
    with Image.open(io.BytesIO(data)) as image:
      fmt, size, mode = image.format, image.size, image.mode
      image.verify()
  except Exception as e:  # PIL raises many types for corrupt files.
    raise DataError(f'{path}: corrupt PNG ({type(e).__name__}: {e})') from e
  expected = (features.IMAGE_SIZE, features.IMAGE_SIZE)
  if fmt != 'PNG' or size != expected or mode != 'RGBA':
    raise DataError(
      f'{path}: expected a {expected[0]}x{expected[1]} RGBA PNG, got '
      f'{fmt} {size[0]}x{size[1]} {mode}'
    )
  return data


def read_camera(path: str) -> np.ndarray:
  """Camera parameters float32 [24, 5] (features.CAMERA_FIELDS) from rendering_metadata.txt."""
  with open(path) as f:
    lines = [line.split() for line in f if line.strip()]
  shape = (features.NUM_VIEWS, len(features.CAMERA_FIELDS))
  try:
    camera = np.asarray(lines, np.float32)
  except ValueError as e:
    raise DataError(f'{path}: expected {shape[0]} lines of {shape[1]} floats ({e})') from e
  if camera.shape != shape:
    raise DataError(
      f'{path}: expected {shape[0]} lines of {shape[1]} floats, got '
      f'{len(lines)} lines of {sorted({len(l) for l in lines})} values'
    )
  return camera


def read_voxels(path: str) -> np.ndarray:
  """Occupancy bool [32, 32, 32] in the peers' axis order."""
  voxels, _ = binvox.read_binvox(path)
  if voxels.shape != (features.VOXEL_SIZE,) * 3:
    raise DataError(
      f'{path}: expected a {features.VOXEL_SIZE}^3 grid, got {"x".join(map(str, voxels.shape))}'
    )
  return voxels


def load_example(manual_dir: str, synset: str, model_id: str, label: int) -> dict:
  """One example of features.features(): PNG bytes x24, camera, voxels, label, ids."""
  rdir = rendering_dir(manual_dir, synset, model_id)
  return {
    'images': [read_png(os.path.join(rdir, name)) for name in VIEW_NAMES],
    'camera': read_camera(os.path.join(rdir, CAMERA_FILE)),
    'voxels': read_voxels(voxel_path(manual_dir, synset, model_id)),
    'label': label,
    'synset': synset,
    'model_id': model_id,
  }


def manual_dir(dl_manager, what: str, folders: tuple[str, ...], instructions: str) -> str:
  """The builder's manual dir as a str, or a NotFoundError saying how to fill it: when
  it is missing or empty, or holds none of `folders` (e.g. ShapeNetVox32)."""
  try:
    path = os.fspath(dl_manager.manual_dir)
  except AssertionError as e:  # TFDS asserts the manual dir exists and is non-empty.
    first = str(e).split('. Create it')[0]  # TFDS then repeats our instructions
    raise NotFoundError(f'{what} data not found: {first}.\n{instructions}') from None
  if not any(os.path.isdir(os.path.join(path, d)) for d in folders):
    has = (
      f'no {folders[0]}/ folder'
      if len(folders) == 1
      else 'neither ' + ' nor '.join(f'{d}/' for d in folders)
    )
    raise NotFoundError(f'{path} has {has}. ' + instructions)
  return path
