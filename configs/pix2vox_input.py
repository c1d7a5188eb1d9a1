r"""JTSO with Pix2Vox's input protocol instead of R2N2's (presets as configs/jtso.py).

Pix2Vox's data pipeline (its utils/data_transforms.py and config): the centre 128 crop
resized to 224 (`pix2vox_224`), and for training colour jitter 0.4, AlexNet PCA lighting
noise 0.1 and a random channel order per object, normalised with mean = std = 0.5.
  python main.py --config=configs/pix2vox_input.py:paper
"""

import ml_collections

from configs import jtso

PIX2VOX_DATA = dict(
  protocol='pix2vox_224',
  color_jitter=0.4,
  pca_noise=0.1,
  rgb_permute=True,
  mean=(0.5, 0.5, 0.5),
  std=(0.5, 0.5, 0.5),
)


def get_config(preset: str = 'quick') -> ml_collections.ConfigDict:
  config = jtso.get_config(preset)
  config.data.update(PIX2VOX_DATA)
  return config
