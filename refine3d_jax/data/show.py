"""Looks at one object of any dataset with our feature spec: its views beside its voxels.

  python -m refine3d_jax.data.show --data_dir=DIR --dataset=synthetic_shapes/small \
      --split=train --index=0 --out=x.png

Reads the prepared dataset with `tfds.builder_from_directory` (no builder code imported).
"""

import json
import os
from typing import Any, Sequence

import matplotlib
import numpy as np

from refine3d_jax import errors

BUILD_HINT = 'python -m refine3d_jax.data.build --dataset={name} --data_dir={data_dir}'


def dataset_dir(data_dir: str, dataset: str) -> str:
  """The prepared directory DATA_DIR/name/config/version of `name[/config][:version]`."""
  name, _, version = dataset.partition(':')
  path = os.path.join(os.path.expanduser(data_dir), *name.split('/'))
  built = ''
  if os.path.isdir(path) and '/' not in name:  # no config given: TFDS records the default
    default = os.path.join(path, '.config', 'metadata.json')
    configs = sorted(d for d in os.listdir(path) if not d[0].isdigit() and d[0] != '.')
    built = f' Built configs: {configs}.' if configs else ''
    if os.path.exists(default):
      with open(default) as f:
        path = os.path.join(path, json.load(f)['default_config_name'])
  if os.path.isdir(path) and not version:
    versions = sorted(
      (d for d in os.listdir(path) if d[0].isdigit()),
      key=lambda v: tuple(int(x) for x in v.split('.')),
    )
    version = versions[-1] if versions else ''
  path = os.path.join(path, version) if version else path
  if not os.path.exists(os.path.join(path, 'dataset_info.json')):
    raise errors.NotFoundError(
      f'Dataset {dataset!r} is not built under {data_dir!r} (no {path}/dataset_info.json).'
      f'{built} '
      f'Build it with: {BUILD_HINT.format(name=name.split("/")[0], data_dir=data_dir)}'
    )
  return path


def load_example(data_dir: str, dataset: str, split: str, index: int) -> tuple[dict, list[str]]:
  """(example, category names): images [24, 137, 137, 4] uint8, camera, voxels [32]^3, ..."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder_from_directory(dataset_dir(data_dir, dataset))
  example = builder.as_data_source(split=split)[index]
  example['images'] = np.stack(example['images'])
  return example, builder.info.features['label'].names


def plot(example: dict[str, Any], names: Sequence[str], views: Sequence[int], out: str) -> None:
  """Writes a PNG of the chosen views (on grey, as R2N2 tests) and the voxel grid."""
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  cols = min(6, len(views))
  rows = -(-len(views) // cols)
  fig = plt.figure(figsize=(2 * cols + 4, 2 * max(rows, 2)))
  grid = fig.add_gridspec(max(rows, 2), cols + 2)
  for k, v in enumerate(views):
    ax = fig.add_subplot(grid[k // cols, k % cols])
    image = example['images'][v].astype(np.float32)
    alpha = image[..., 3:] / 255.0
    ax.imshow((image[..., :3] * alpha + 240 * (1 - alpha)).astype(np.uint8))
    az, el = example['camera'][v][:2]
    ax.set_title(f'view {v}: az {az:.0f} el {el:.0f}', fontsize=7)
    ax.axis('off')
  ax = fig.add_subplot(grid[:, cols:], projection='3d')
  # Our axes are (x, y up, z); matplotlib's 3D plot has z up, so plot as (x, z, y).
  vox = np.asarray(example['voxels'], bool).transpose(0, 2, 1)
  ax.voxels(vox, facecolors='#c08040', edgecolor='k', linewidth=0.1)
  ax.set(xlabel='x', ylabel='z', zlabel='y (up)', xlim=(0, 32), ylim=(0, 32), zlim=(0, 32))
  ax.set_box_aspect((1, 1, 1))
  label = example['label']
  synset = example.get('synset', b'')
  synset = synset.decode() if isinstance(synset, bytes) else synset
  model_id = example.get('model_id', b'')
  model_id = model_id.decode() if isinstance(model_id, bytes) else model_id
  ax.set_title(f'{names[label]} ({synset}/{model_id}): {vox.sum()} voxels', fontsize=9)
  fig.tight_layout()
  fig.savefig(out, dpi=80)
  plt.close(fig)


def main(
  data_dir: str,
  dataset: str,
  split: str,
  index: int,
  out: str,
  views: Sequence[int] = tuple(range(24)),
) -> None:
  example, names = load_example(data_dir, dataset, split, index)
  plot(example, names, views, out)
  print(f'wrote {out}: {names[example["label"]]}')


if __name__ == '__main__':
  from absl import flags  # pylint: disable=g-import-not-at-top
  from refine3d_jax import cli  # pylint: disable=g-import-not-at-top

  flags.DEFINE_string('data_dir', None, 'TFDS data directory.', required=True)
  flags.DEFINE_string('dataset', 'synthetic_shapes', 'name[/config][:version].')
  flags.DEFINE_string('split', 'train', 'Split.')
  flags.DEFINE_integer('index', 0, 'Example index within the split.')
  flags.DEFINE_string('out', 'example.png', 'Output PNG.')
  flags.DEFINE_list('views', [str(v) for v in range(24)], 'Views to show.')
  FLAGS = flags.FLAGS
  cli.run(
    lambda _: main(
      FLAGS.data_dir,
      FLAGS.dataset,
      FLAGS.split,
      FLAGS.index,
      FLAGS.out,
      [int(v) for v in FLAGS.views],
    )
  )
