"""Photos made to look like the dataset's renderings: the input side of `predict`.

  paths = list_images(['a.png', 'folder/'])        # files, or folders' PNG and JPEG files
  rendering = to_rendering(read_image(paths[0]), test_background=240, background='auto')

Each photo becomes a 137x137 rendering (features.IMAGE_SIZE); predict then feeds it
through the evaluation path of the training protocol (data/views.py):
  1. decode (EXIF rotation applied, shrunk to at most MAX_SIDE px); grey becomes RGB;
  2. object mask: from alpha when any pixel is not opaque (alpha >= 128); with
     --background=auto, from the border colour (border_mask); else none;
  3. alpha (or the auto mask) is blended onto data.test_background, the colour the model
     saw behind every rendering at evaluation;
  4. framing: a square around the mask's bounding box, its side the box's longer side /
     OBJECT_FILL and the box OBJECT_DROP lower than centred (the objects' median extent
     and mean placement in the renderings), padded with the background where it leaves
     the photo; without a mask (or --framing=image) the centred square of the photo;
     resized to 137.
A rendering given as is (137x137 RGBA, --framing=image) reaches the model exactly as in
evaluation (semi-transparent edge pixels aside: blended here, kept there). Measured with
the quick model on the 200 synthetic test objects, views 0, 6, 12, IoU at 0.3: 0.559 as
evaluated (= --framing=image), 0.515 reframed (default); the same views pasted off-centre
on a 300x200 plain noisy backdrop: 0.516 with --background=auto, 0.165 without.
"""

import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from refine3d_jax import cli, errors
from refine3d_jax.data import features, transforms

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
MAX_SIDE = 1024  # photos are shrunk to this first: the model sees 137 px at most
OBJECT_FILL = 0.7  # object's longer side / rendering side: median over the 144 ShapeNet
# sample renderings 0.71 (p10-p90 0.56-0.83), synthetic_shapes 0.65
OBJECT_DROP = 0.035  # object's centre below the rendering's centre / side (the cameras
# look down): ShapeNet sample 0.034, synthetic_shapes 0.028 (means)
BORDER = 0.03  # --background=auto: the border strip, a fraction of the shorter side
MIN_TOLERANCE = 24.0  # --background=auto: least RGB distance (of 0..255) from the border
# colour that counts as object
BACKGROUNDS = ('none', 'auto')
FRAMINGS = ('object', 'image')


class InputError(errors.UserError, ValueError):
  """An input that cannot be used; the message starts with the file it is about."""


def list_images(args: Sequence[str]) -> list[str]:
  """The image files named by `args`: files, or folders (their PNG and JPEG files, sorted)."""
  if not args:
    raise InputError('no images given: pass --images a.png b.jpg ... (files or folders)')
  paths = []
  for arg in args:
    if cli.is_url(arg):
      raise InputError(f'{arg}: a URL; {cli.NO_NETWORK}')
    if os.path.isdir(arg):
      found = sorted(
        os.path.join(arg, f) for f in os.listdir(arg) if f.lower().endswith(IMAGE_EXTENSIONS)
      )
      if not found:
        raise InputError(f'{arg}: no PNG or JPEG files in this folder')
      paths += found
    elif not os.path.isfile(arg):
      raise InputError(f'{arg}: no such file')
    else:
      paths.append(arg)
  return paths


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 4] if the file has transparency, else [H, W, 3]; upright (EXIF) and at
  most MAX_SIDE px. Raises InputError naming `path` for an empty or unreadable file."""
  if os.path.getsize(path) == 0:
    raise InputError(f'{path}: empty file (0 bytes)')
  try:
    with Image.open(path) as image:
      image = ImageOps.exif_transpose(image)  # phones store the rotation in EXIF
      alpha = 'A' in image.getbands() or 'transparency' in image.info
      image = image.convert('RGBA' if alpha else 'RGB')
      image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
      return np.asarray(image)
  except UnidentifiedImageError:
    raise InputError(f'{path}: not a PNG or JPEG image (PIL cannot identify it)') from None
  except Exception as e:  # PIL raises many types for corrupt files.
    raise InputError(f'{path}: unreadable image ({type(e).__name__}: {e})') from None


def as_rgba(image: np.ndarray) -> np.ndarray:
  """[H, W] or [H, W, 1|3|4], uint8 or float in [0, 1] -> uint8 [H, W, 4]."""
  x = np.asarray(image)
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3 or x.shape[-1] not in (1, 3, 4) or min(x.shape[:2]) < 1:
    raise ValueError(f'need an image [H, W], [H, W, 3] or [H, W, 4]; got shape {x.shape}')
  if x.dtype != np.uint8:
    if not np.issubdtype(x.dtype, np.floating) or x.min() < 0 or x.max() > 1:
      raise ValueError(f'need uint8 or floats in [0, 1]; got {x.dtype} in [{x.min()}, {x.max()}]')
    x = np.round(x * 255).astype(np.uint8)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  if x.shape[-1] == 3:
    x = np.concatenate([x, np.full(x.shape[:2] + (1,), 255, np.uint8)], -1)
  return x


def border_mask(rgb: np.ndarray) -> np.ndarray:
  """bool [H, W] object mask of a photo on a plain background (--background=auto).

  The background colour is the median of a border strip (BORDER of the shorter side); a
  pixel is background when its RGB distance to it is at most 3x the strip's median distance
  (about the 99.9% point of Gaussian noise) or MIN_TOLERANCE, whichever is larger, and it is
  connected to the border through such pixels (an object's own background-coloured parts
  stay object). Object specks under 1% of the largest piece are dropped. Raises ValueError
  when nothing is left.
  """
  from scipy import ndimage  # pylint: disable=g-import-not-at-top

  x = np.asarray(rgb, np.float32)
  h, w = x.shape[:2]
  b = max(1, min(round(BORDER * min(h, w)), h // 2, w // 2))
  ring = np.ones((h, w), bool)
  ring[b : h - b, b : w - b] = False
  colour = np.median(x[ring], axis=0)
  distance = np.linalg.norm(x - colour, axis=-1)
  tolerance = max(MIN_TOLERANCE, 3 * float(np.median(distance[ring])))
  near, _ = ndimage.label(distance <= tolerance)
  edge = np.unique(near[ring])
  objects, count = ndimage.label(~np.isin(near, edge[edge > 0]))
  if not count:
    raise ValueError(
      f'--background=auto found no object: every pixel is within '
      f'{tolerance:.0f} of the border colour {np.round(colour).astype(int)}'
    )
  sizes = np.bincount(objects.ravel())[1:]
  keep = np.concatenate([[False], sizes >= 0.01 * sizes.max()])
  return keep[objects]


def blend(rgba: np.ndarray, alpha: np.ndarray, background: int) -> np.ndarray:
  """uint8 [H, W, 3]: the RGB of `rgba` over a uniform `background` with `alpha` [H, W]
  (uint8); alpha 0 gives exactly the background, 255 exactly the pixel."""
  a = alpha[..., None].astype(np.float32) / 255
  rgb = rgba[..., :3] * a + np.float32(background) * (1 - a)
  return np.round(rgb).astype(np.uint8)


def frame(
  rgb: np.ndarray,
  mask: np.ndarray | None,
  background: int,
  fill: float = OBJECT_FILL,
  drop: float = OBJECT_DROP,
) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8 [137, 137, 3]: the square around `mask`'s bounding box, its
  side the box's longer side / `fill`, the box's centre `drop` * side below the square's;
  or (no mask, or an empty one) the image's centred square. Padded with `background`
  where it leaves the image."""
  h, w = rgb.shape[:2]
  if mask is None or not mask.any():
    cy, cx, side = h / 2, w / 2, min(h, w)
  else:
    ys, xs = np.nonzero(mask)
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) / fill
    cy, cx = (ys.min() + ys.max() + 1) / 2 - drop * side, (xs.min() + xs.max() + 1) / 2
  side = max(1, round(side))
  top, left = round(cy - side / 2), round(cx - side / 2)
  square = np.full((side, side, 3), background, np.uint8)
  t, l = max(top, 0), max(left, 0)
  b, r = min(top + side, h), min(left + side, w)
  square[t - top : b - top, l - left : r - left] = rgb[t:b, l:r]
  return transforms.resize(square, features.IMAGE_SIZE)


def to_rendering(
  image: np.ndarray, test_background: int, background: str = 'none', framing: str = 'object'
) -> np.ndarray:
  """Any image -> uint8 [137, 137, 4] (opaque) framed and lit like a rendering: steps 2-4
  of the module docstring."""
  if background not in BACKGROUNDS or framing not in FRAMINGS:
    raise ValueError(
      f'background must be one of {BACKGROUNDS} and framing one of '
      f'{FRAMINGS}; got {background!r}, {framing!r}'
    )
  rgba = as_rgba(image)
  alpha, mask = rgba[..., 3], None
  if (alpha < 255).any():
    mask = alpha >= 128
  elif background == 'auto':
    mask = border_mask(rgba[..., :3])
    alpha = np.where(mask, 255, 0).astype(np.uint8)
  rgb = frame(
    blend(rgba, alpha, test_background), mask if framing == 'object' else None, test_background
  )
  return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)
