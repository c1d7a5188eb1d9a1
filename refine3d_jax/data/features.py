"""The feature spec shared by every dataset builder, so later stages treat all alike.

One example is one object:
  images    24 views, [24, 137, 137, 4] uint8 RGBA, stored as PNG bytes (`encode_png`; no
            TensorFlow needed to write or read; the alpha channel is kept so background
            compositing stays a preprocessing choice)
  camera    [24, 5] float32 per view: CAMERA_FIELDS (R2N2's rendering_metadata.txt order)
  voxels    [32, 32, 32] bool occupancy, axes as every peer uses them (binvox x, z, y
            transposed with (0, 2, 1))
  label     class index into the builder's category names
  synset    category id (ShapeNet synset, or the synthetic category's name)
  model_id  object id within its category (objects are keyed on (synset, model_id))
"""

import struct
from typing import Sequence
import zlib

import numpy as np
import tensorflow_datasets as tfds

NUM_VIEWS = 24
IMAGE_SIZE = 137
VOXEL_SIZE = 32
CAMERA_FIELDS = ('azimuth', 'elevation', 'in_plane_rotation', 'distance', 'fov')


def features(category_names: Sequence[str]) -> tfds.features.FeaturesDict:
  """The FeaturesDict of one object, with `label` over `category_names`."""
  image = tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 4), encoding_format='png')
  return tfds.features.FeaturesDict(
    {
      'images': tfds.features.Sequence(image, length=NUM_VIEWS),
      'camera': tfds.features.Tensor(shape=(NUM_VIEWS, len(CAMERA_FIELDS)), dtype=np.float32),
      'voxels': tfds.features.Tensor(shape=(VOXEL_SIZE,) * 3, dtype=np.bool_),
      'label': tfds.features.ClassLabel(names=list(category_names)),
      'synset': tfds.features.Text(),
      'model_id': tfds.features.Text(),
    }
  )


def _chunk(tag: bytes, data: bytes) -> bytes:
  return (
    struct.pack('>I', len(data))
    + tag
    + data
    + struct.pack('>I', zlib.crc32(tag + data) & 0xFFFFFFFF)
  )


def encode_png(image: np.ndarray) -> bytes:
  """PNG bytes of an [H, W, 4] uint8 RGBA image.

  Written directly (filter 'none', zlib level 1): 4x faster than PIL, and encoding the
  24 views is a large part of the build time.
  """
  h, w, _ = image.shape
  rows = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * 4)], 1)
  return (
    b'\x89PNG\r\n\x1a\n'
    + _chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 6, 0, 0, 0))
    + _chunk(b'IDAT', zlib.compress(rows.tobytes(), 1))
    + _chunk(b'IEND', b'')
  )
