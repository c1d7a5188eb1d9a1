"""Pure per-view numpy image functions: PNG decode, crop, background, flip, resize, jitter.

Each function takes and returns one view (no batch axis) and draws no random numbers;
the input pipeline samples the parameters (crop offset, background colour, ...) and
passes them in, so every function here is deterministic and testable on its own.

The input protocols (see PROTOCOLS and /work/shared/PROTOCOL.md):
  r2n2_127     R2N2 / AttSets / Refine3DNet code: a 127x127 crop of the 137x137 view,
               train at a random offset 0..9 per axis + random horizontal flip,
               test at the centre (offset 5).
  pix2vox_224  Pix2Vox family: the centre 128x128 crop (offset 4) resized to 224x224;
               train adds a random flip. Pix2Vox's training also jitters colour, adds
               PCA lighting noise, normalises with mean = std = 0.5 and permutes the RGB
               channels: config.data (color_jitter, pca_noise, mean, std, rgb_permute;
               configs/pix2vox_input.py sets them all).
Both replace alpha-0 pixels with a background colour (train: random in [225, 255] per
channel; test: 240), as the peers do (not alpha blending).
"""

import dataclasses
import io

import numpy as np
from PIL import Image

from refine3d_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How a 137x137 view becomes the protocol's square input.

  crop: side of the square crop; size: side after resizing the crop (the protocol's
  input size); train_offsets: train crop offsets are drawn from 0..train_offsets per
  axis (0 = always the centre); center_offset: the crop offset at test time (and in
  training when train_offsets is 0); train_flip: random horizontal flip in training.
  """

  crop: int
  size: int
  train_offsets: int
  center_offset: int
  train_flip: bool


PROTOCOLS = {
  'r2n2_127': Protocol(crop=127, size=127, train_offsets=9, center_offset=5, train_flip=True),
  'pix2vox_224': Protocol(crop=128, size=224, train_offsets=0, center_offset=4, train_flip=True),
}


def decode_png(data: bytes) -> np.ndarray:
  """PNG bytes -> uint8 [H, W, 4] RGBA (RGB and grey inputs get an opaque alpha).

  Raises ValueError (with PIL's reason) for bytes that are not a readable image.
  """
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      rgba = image.convert('RGBA')
  except Exception as e:  # PIL raises many types for corrupt files.
    raise DataError(f'corrupt PNG ({type(e).__name__}: {e})') from e
  return np.asarray(rgba)


def crop(image: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
  """[H, W, C] -> [size, size, C], the square whose top-left corner is (top, left)."""
  h, w = image.shape[:2]
  if not (0 <= top <= h - size and 0 <= left <= w - size):
    raise ValueError(f'crop {size}x{size} at ({top}, {left}) leaves the {h}x{w} image')
  return image[top : top + size, left : left + size]


def _composite_words(rgba: np.ndarray, color) -> np.ndarray:
  """uint8 [H, W, 4] -> uint32 [H, W] little-endian pixels, `color` where alpha is 0."""
  rgba = np.asarray(rgba, np.uint8)
  if rgba.strides[-1] != 1:
    rgba = np.ascontiguousarray(rgba)
  # a crop or flip of a decoded image keeps each pixel's 4 bytes together: view them as
  # words in place (strided), so the select below is the only pass over the pixels
  words = rgba.view('<u4')[..., 0]
  fill = np.asarray([*color, 0], np.uint8).view('<u4')[0]
  return np.where(words >> 24 == 0, fill, words).astype('<u4', copy=False)


def composite_background(rgba: np.ndarray, color) -> np.ndarray:
  """uint8 [H, W, 4] -> uint8 [H, W, 3]: pixels with alpha 0 get `color` (3 ints).

  One select over the pixels as little-endian uint32 words (alpha is the high byte): 2.8x
  faster than a copy and a masked assignment, the input pipeline's largest cost per view.
  The result is a strided view (the first 3 of 4 bytes per pixel) of a new array."""
  return _composite_words(rgba, color).view(np.uint8).reshape(rgba.shape)[..., :3]


def composite_resize(rgba: np.ndarray, color, size: int) -> np.ndarray:
  """`resize(composite_background(rgba, color), size)`, the same bytes, without copying
  the strided RGB view: PIL resizes the composited 4-byte pixels as 'RGBX' (each band on
  its own, with no premultiplied alpha), then drops the 4th band at the new size. 0.29 against
  0.49 ms per 127 -> 64 px view (2-core AMD EPYC)."""
  if rgba.shape[:2] == (size, size):
    return composite_background(rgba, color)
  h, w = rgba.shape[:2]
  image = Image.frombuffer('RGBX', (w, h), _composite_words(rgba, color), 'raw', 'RGBX', 0, 1)
  return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR).convert('RGB'))


def flip_horizontal(image: np.ndarray) -> np.ndarray:
  """[H, W, C] mirrored left-right."""
  return image[:, ::-1]


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8 [size, size, 3] with PIL bilinear (antialiased when shrinking);
  returned unchanged when it already has that size."""
  if rgb.shape[:2] == (size, size):
    return rgb
  image = Image.fromarray(np.ascontiguousarray(rgb))
  return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))


def to_float(rgb: np.ndarray) -> np.ndarray:
  """uint8 [H, W, 3] -> float32 [H, W, 3] in [0, 1]."""
  return rgb.astype(np.float32) / np.float32(255)


def color_jitter(
  x: np.ndarray, brightness: float, contrast: float, saturation: float
) -> np.ndarray:
  """float32 [H, W, 3] in [0, 1], jittered by multiplicative factors (1 = unchanged), as
  torchvision / Pix2Vox: brightness scales, contrast blends with the mean grey, saturation
  blends with the per-pixel grey; clipped back to [0, 1]."""
  grey_weights = np.asarray([0.299, 0.587, 0.114], np.float32)
  x = x * np.float32(brightness)
  mean_grey = (x @ grey_weights).mean()
  x = (x - mean_grey) * np.float32(contrast) + mean_grey
  grey = (x @ grey_weights)[..., None]
  x = (x - grey) * np.float32(saturation) + grey
  return np.clip(x, 0, 1).astype(np.float32)


def normalize(x: np.ndarray, mean, std) -> np.ndarray:
  """float32 [H, W, 3] in [0, 1] -> (x - mean) / std per channel, float32 (`x` itself
  for mean 0 and std 1, R2N2's x / 255)."""
  if tuple(mean) == (0, 0, 0) and tuple(std) == (1, 1, 1):
    return x
  return ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)


# AlexNet's PCA of ImageNet's RGB values, which Pix2Vox's RandomNoise uses.
PCA_EIGVALS = np.asarray([0.2175, 0.0188, 0.0045], np.float32)
PCA_EIGVECS = np.asarray(
  [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]], np.float32
)


def pca_lighting(x: np.ndarray, alpha) -> np.ndarray:
  """float32 [H, W, 3] plus AlexNet's lighting noise: channel c gets
  sum_j EIGVECS[c, j] * alpha[j] * EIGVALS[j] (alpha ~ N(0, noise_std), as Pix2Vox draws it;
  not clipped, as there)."""
  shift = PCA_EIGVECS @ (np.asarray(alpha, np.float32) * PCA_EIGVALS)
  return (x + shift).astype(np.float32)


def permute_channels(x: np.ndarray, perm) -> np.ndarray:
  """[H, W, 3] with its channels in the order `perm` (Pix2Vox's RandomPermuteRGB)."""
  return x[..., list(perm)]
