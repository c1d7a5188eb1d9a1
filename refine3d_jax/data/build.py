"""Builds a dataset into array_record files (no TensorFlow needed).

  python -m refine3d_jax.data.build --dataset=shapenet_r2n2 --builder_config=pix2vox \
      --manual_dir=/data/shapenet_r2n2_raw --data_dir=/data/tfds
  python -m refine3d_jax.data.build --dataset=synthetic_shapes --data_dir=/data/tfds

Read the result with `tfds.builder_from_directory(<printed path>).as_data_source()`.
"""

import os
import time
from typing import Any, Sequence

from absl import flags, logging
import tensorflow_datasets as tfds

from refine3d_jax import cli, errors, input_pipeline

DATASETS = ('shapenet_r2n2', 'shapenet_vox', 'synthetic_shapes')
_SYNTHETIC_MODULE = 'refine3d_jax.data.synthetic_shapes'


class MissingBuilderError(errors.UserError, ModuleNotFoundError):
  """A dataset's builder package is not in this checkout."""


def builder_class(dataset: str) -> type[tfds.core.DatasetBuilder]:
  """The builder class of `dataset`, imported only now (each builder may be absent)."""
  if dataset == 'shapenet_r2n2':
    from refine3d_jax.data.shapenet_r2n2 import ShapenetR2n2  # pylint: disable=g-import-not-at-top

    return ShapenetR2n2
  if dataset == 'shapenet_vox':
    from refine3d_jax.data.shapenet_vox import ShapenetVox  # pylint: disable=g-import-not-at-top

    return ShapenetVox
  if dataset == 'synthetic_shapes':
    try:
      from refine3d_jax.data.synthetic_shapes import SyntheticShapes  # pylint: disable=g-import-not-at-top
    except ModuleNotFoundError as e:
      if e.name != _SYNTHETIC_MODULE:
        raise
      raise MissingBuilderError(
        f'--dataset=synthetic_shapes needs the package {_SYNTHETIC_MODULE} (class '
        'SyntheticShapes), which is not in this checkout yet.',
        name=e.name,
      ) from e
    return SyntheticShapes
  raise ValueError(f'unknown --dataset={dataset!r}; choose one of {", ".join(DATASETS)}')


def build(
  dataset: str,
  data_dir: str,
  builder_config: str | None = None,
  manual_dir: str | None = None,
  split_file: str | None = None,
  force: bool = False,
) -> dict[str, Any]:
  """Builds `dataset` under `data_dir` (reusing a finished build unless `force`).

  Returns {'path', 'config', 'splits': {split: num_examples}, 'skipped': {split: {reason:
  count}}, 'seconds', 'reused'}. A leading `~` in a path is the home directory (a shell
  leaves `--data_dir=~/...` unexpanded).
  """
  cls = builder_class(dataset)
  data_dir = os.path.expanduser(data_dir)
  manual_dir = None if manual_dir is None else os.path.expanduser(manual_dir)
  split_file = None if split_file is None else os.path.expanduser(split_file)
  if manual_dir is not None and not os.path.isdir(manual_dir):
    instructions = getattr(cls, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None) or ''
    raise errors.NotFoundError(f'--manual_dir={manual_dir} does not exist. {instructions}')
  kwargs = {}
  if split_file is not None:
    if dataset not in ('shapenet_r2n2', 'shapenet_vox'):
      raise ValueError('--split_file applies to --dataset=shapenet_r2n2 or shapenet_vox only')
    kwargs['split_file'] = split_file
  builder = cls(config=builder_config, data_dir=data_dir, file_format='array_record', **kwargs)
  reused = not force and os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json'))
  mode = (
    tfds.download.GenerateMode.FORCE_REDOWNLOAD
    if force
    else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
  )
  start = time.perf_counter()
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, download_mode=mode)
  )
  seconds = time.perf_counter() - start
  metadata = builder.info.metadata or {}
  return {
    'path': os.fspath(builder.data_dir),
    'config': builder.builder_config.name if builder.builder_config else None,
    'splits': {name: split.num_examples for name, split in builder.info.splits.items()},
    'skipped': dict(metadata.get('skipped_counts', {})),
    'seconds': seconds,
    'reused': reused,
  }


def ensure_synthetic(data) -> None:
  """Builds the synthetic dataset `data` (a config.data) names if it is not built yet: the
  first run on a fresh machine needs no build step (no download either)."""
  if data.dataset != 'synthetic_shapes':
    return
  path = input_pipeline.dataset_dir(data.dataset, data.builder_config, data.data_dir)
  if not os.path.exists(os.path.join(path, 'dataset_info.json')):
    logging.info('Building %s into %s (first run only).', data.dataset, data.data_dir)
    build(data.dataset, data.data_dir, data.builder_config or None)


def format_summary(dataset: str, summary: dict[str, Any]) -> str:
  """Human-readable lines: where the data went, examples and skips per split, time."""
  name = dataset + (f'/{summary["config"]}' if summary['config'] else '')
  lines = [
    f'{name} {"already built (reused)" if summary["reused"] else "built"} in {summary["path"]}',
    f'  read it with tfds.builder_from_directory({summary["path"]!r})',
  ]
  for split, count in summary['splits'].items():
    skipped = summary['skipped'].get(split) or {}
    skips = ', '.join(f'{r}={n}' for r, n in sorted(skipped.items())) or 'none'
    lines.append(f'  {split}: {count} examples (skipped: {skips})')
  lines.append(f'  time: {summary["seconds"]:.1f} s')
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  cli.no_arguments(argv)
  tfds.enable_progress_bar()
  f = flags.FLAGS
  summary = build(f.dataset, f.data_dir, f.builder_config, f.manual_dir, f.split_file, f.force)
  print(format_summary(f.dataset, summary), flush=True)


def _define_flags() -> None:
  flags.DEFINE_enum('dataset', None, DATASETS, 'Which dataset to build.', required=True)
  flags.DEFINE_string('data_dir', None, 'TFDS data dir to write into.', required=True)
  flags.DEFINE_string(
    'builder_config',
    None,
    'Builder config, e.g. shapenet_r2n2: pix2vox (default), r2n2, '
    'pix2vox_5class, r2n2_5class; shapenet_vox: pix2vox (default), r2n2.',
  )
  flags.DEFINE_string(
    'manual_dir',
    None,
    'Dir holding the extracted ShapeNetRendering/ and ShapeNetVox32/ '
    '(shapenet_vox: ShapeNetVox32/ only; default <data_dir>/downloads/manual).',
  )
  flags.DEFINE_string(
    'split_file',
    None,
    'shapenet_r2n2 and shapenet_vox pix2vox configs: a Pix2Vox-format '
    'ShapeNet.json to use instead of the shipped one.',
  )
  flags.DEFINE_bool('force', False, 'Rebuild even if a finished build exists.')


if __name__ == '__main__':
  _define_flags()  # only here, so importing this module defines no flags
  cli.run(main)
