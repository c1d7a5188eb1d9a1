"""One view through a view protocol: a 137x137 RGBA rendering -> the model's input.

  opts = view_options(config, train=False)   # static and picklable (grain workers)
  params = sample_view_params(opts, rng)     # the random draws (training) or the fixed ones
  x = finish_view(view_pixels(decode_view(example, 3), opts, params), opts, params)

view_pixels crops (at the protocol's offset), fills the background behind alpha, flips
and resizes to S = config.model.image_size: uint8 [S, S, 3]; finish_view jitters colour,
adds lighting noise, normalises with data.mean / data.std and permutes channels (those two
drawn once per object: ObjectParams): float32 [S, S, 3]. The input pipeline runs every
view of a dataset example through it; predict runs photos made to look like renderings
(data/photos.py). The image functions themselves are data/transforms.py's.
"""

import dataclasses
from typing import Any

import ml_collections
import numpy as np

from refine3d_jax.data import transforms
from refine3d_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class ViewOptions:
  """Static preprocessing options of one pipeline (picklable, for grain workers)."""

  protocol: str
  image_size: int  # output side S (config.model.image_size)
  train: bool
  train_background: tuple[int, int]
  test_background: int
  color_jitter: float
  mean: tuple[float, float, float]
  std: tuple[float, float, float]
  pca_noise: float = 0.0  # training: AlexNet lighting noise, one draw per object
  rgb_permute: bool = False  # training: one random channel order per object


def view_options(config: ml_collections.ConfigDict, train: bool) -> ViewOptions:
  """ViewOptions from config.data and config.model.image_size."""
  d = config.data
  return ViewOptions(
    d.protocol,
    config.model.image_size,
    train,
    tuple(d.train_background),
    d.test_background,
    float(d.color_jitter),
    tuple(d.mean),
    tuple(d.std),
    float(d.pca_noise),
    bool(d.rgb_permute),
  )


@dataclasses.dataclass(frozen=True)
class ViewParams:
  """The random choices for one view (or the fixed ones at test time)."""

  top: int
  left: int
  flip: bool
  background: tuple[int, int, int]
  jitter: tuple[float, float, float]  # brightness, contrast, saturation factors


def sample_view_params(opts: ViewOptions, rng: np.random.Generator | None) -> ViewParams:
  """Training (rng given, opts.train): random offset, flip, background, jitter; else the
  protocol's centre crop and the test background."""
  p = transforms.PROTOCOLS[opts.protocol]
  if not opts.train:
    bg = (opts.test_background,) * 3
    return ViewParams(p.center_offset, p.center_offset, False, bg, (1.0, 1.0, 1.0))
  if p.train_offsets:
    top, left = (int(o) for o in rng.integers(0, p.train_offsets + 1, size=2))
  else:
    top = left = p.center_offset
  flip = bool(p.train_flip and rng.random() < 0.5)
  lo, hi = opts.train_background
  bg = tuple(int(c) for c in rng.integers(lo, hi + 1, size=3))
  j = opts.color_jitter
  jitter = tuple(float(f) for f in rng.uniform(1 - j, 1 + j, size=3)) if j else (1.0,) * 3
  return ViewParams(top, left, flip, bg, jitter)


def view_pixels(rgba: np.ndarray, opts: ViewOptions, params: ViewParams) -> np.ndarray:
  """uint8 [137, 137, 4] -> uint8 [S, S, 3]: crop, flip, background, resize (one resize,
  straight from the crop to S, also when S differs from the protocol's size)."""
  p = transforms.PROTOCOLS[opts.protocol]
  rgba = transforms.crop(rgba, params.top, params.left, p.crop)
  if params.flip:
    rgba = transforms.flip_horizontal(rgba)
  return transforms.composite_resize(rgba, params.background, opts.image_size)


@dataclasses.dataclass(frozen=True)
class ObjectParams:
  """Random choices shared by all views of one object (Pix2Vox draws these per object)."""

  lighting: tuple[float, float, float] | None = None  # PCA lighting alpha, or none
  perm: tuple[int, int, int] | None = None  # channel order, or unchanged


def sample_object_params(opts: ViewOptions, rng: np.random.Generator | None) -> ObjectParams:
  """Training draws for `opts.pca_noise` and `opts.rgb_permute` (nothing drawn when both are
  off, so other configs' random streams stay as they were); none at test time."""
  if rng is None or not opts.train:
    return ObjectParams()
  lighting = tuple(float(a) for a in rng.normal(0, opts.pca_noise, 3)) if opts.pca_noise else None
  perm = tuple(int(c) for c in rng.permutation(3)) if opts.rgb_permute else None
  return ObjectParams(lighting, perm)


def finish_view(
  rgb: np.ndarray, opts: ViewOptions, params: ViewParams, obj: ObjectParams = ObjectParams()
) -> np.ndarray:
  """uint8 [S, S, 3] -> float32 [S, S, 3]: colour jitter (if any), lighting noise (if
  any), mean/std, channel permutation (if any): Pix2Vox's order."""
  x = transforms.to_float(rgb)
  if params.jitter != (1.0, 1.0, 1.0):
    x = transforms.color_jitter(x, *params.jitter)
  if obj.lighting is not None:
    x = transforms.pca_lighting(x, obj.lighting)
  x = transforms.normalize(x, opts.mean, opts.std)
  return x if obj.perm is None else transforms.permute_channels(x, obj.perm)


def decode_view(example: dict[str, Any], view: int) -> np.ndarray:
  """uint8 [137, 137, 4] of one view; a corrupt PNG raises naming the object and view."""
  try:
    return transforms.decode_png(example['images'][view])
  except ValueError as e:
    raise DataError(
      f'object {_text(example["synset"])}/{_text(example["model_id"])} view {view:02d}: {e}'
    ) from e


def _text(value: Any) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)
