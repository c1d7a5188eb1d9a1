"""TFDS builder for ShapeNet as rendered by 3D-R2N2 (24 views + 32^3 voxels per object).

Builds without TensorFlow into array_record files; read them with
`tfds.builder_from_directory(path).as_data_source()` (no need to import this package).
"""

import dataclasses
from typing import Iterator, Sequence

import tensorflow_datasets as tfds

from refine3d_jax.data.shapenet_r2n2 import objects
from refine3d_jax.data.shapenet_r2n2 import splits
from refine3d_jax.errors import DataError

_MAX_IDS_IN_METADATA = 1000  # per split and reason; counts are always exact.

_DESCRIPTION = """\
ShapeNet as rendered by 3D-R2N2 (Choy et al. 2016): per object, 24 views (137x137 RGBA PNG),
their camera parameters and the 32^3 occupancy grid (ShapeNetVox32), 13 classes.
"""
_CITATION = """\
@inproceedings{choy20163d,
  title={3D-R2N2: A Unified Approach for Single and Multi-view 3D Object Reconstruction},
  author={Choy, Christopher B and Xu, Danfei and Gwak, JunYoung and Chen, Kevin and
          Savarese, Silvio},
  booktitle={ECCV}, year={2016}}
"""
MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download the 3D-R2N2 release of ShapeNet (ShapeNet terms of use: non-commercial research),
the two official archives ShapeNetRendering.tgz and ShapeNetVox32.tgz (from the 3D-R2N2
project page), and extract both into the manual dir (`--manual_dir`, default
<data_dir>/downloads/manual):
  <manual_dir>/ShapeNetRendering/<synset>/<model_id>/rendering/{00..23}.png
  <manual_dir>/ShapeNetRendering/<synset>/<model_id>/rendering/rendering_metadata.txt
  <manual_dir>/ShapeNetVox32/<synset>/<model_id>/model.binvox
e.g. `tar -xzf ShapeNetRendering.tgz -C DIR && tar -xzf ShapeNetVox32.tgz -C DIR`.
"""


@dataclasses.dataclass
class ShapenetR2n2Config(tfds.core.BuilderConfig):
  """split_kind: 'pix2vox' (ShapeNet.json 70/10/20) or 'r2n2' (per class sorted 80/20)."""

  split_kind: str = 'pix2vox'
  synsets: tuple[str, ...] = splits.SYNSETS


def _config(name: str, split_kind: str, synsets: Sequence[str], what: str) -> ShapenetR2n2Config:
  return ShapenetR2n2Config(
    name=name, description=what, split_kind=split_kind, synsets=tuple(synsets)
  )


class ShapenetR2n2(splits.SplitFileBuilder, tfds.core.GeneratorBasedBuilder):
  """ShapeNet (3D-R2N2 renderings and voxels); labels over the 13 classes in every config."""

  DESCRIPTION = _DESCRIPTION
  CITATION = _CITATION
  RELEASE_NOTES = {
    '1.0.0': 'First release: array_record, PNG bytes, Pix2Vox and R2N2 splits.',
    **splits.SplitFileBuilder.RELEASE_NOTES,
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [
    _config('pix2vox', 'pix2vox', splits.SYNSETS, "13 classes, Pix2Vox's ShapeNet.json split."),
    _config('r2n2', 'r2n2', splits.SYNSETS, '13 classes, per class first 80% sorted ids train.'),
    _config(
      'pix2vox_5class',
      'pix2vox',
      splits.FIVE_CLASS,
      "The paper's 5 classes, Pix2Vox split (labels still over 13 names).",
    ),
    _config(
      'r2n2_5class',
      'r2n2',
      splits.FIVE_CLASS,
      "The paper's 5 classes, R2N2 split (labels still over 13 names).",
    ),
  ]

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = objects.manual_dir(
      dl_manager, 'ShapeNet', (objects.RENDERING, objects.VOXELS), MANUAL_DOWNLOAD_INSTRUCTIONS
    )
    wanted = self._wanted_ids(manual_dir)
    kept, counts, ids = {}, {}, {}
    for split, object_ids in wanted.items():
      kept[split], skipped = objects.check_objects('shapenet_r2n2', manual_dir, split, object_ids)
      counts[split] = {r: len(v) for r, v in skipped.items()}
      ids[split] = {r: v[:_MAX_IDS_IN_METADATA] for r, v in skipped.items()}
    kept, validation_source = splits.with_validation(kept)
    self.info.metadata.update(
      {
        'split_source': splits.split_source(self.builder_config.split_kind, self._split_file),
        'validation_source': validation_source,
        'synsets': list(self.builder_config.synsets),
        'skipped_counts': counts,
        'skipped_ids': ids,
      }
    )
    empty = sorted(s for s, v in kept.items() if not v)
    if empty:
      raise DataError(
        f'split(s) {empty} of shapenet_r2n2/{self.builder_config.name} would be empty: '
        f'none of their objects is complete in {manual_dir} (skipped: '
        f'{ {s: counts[s] for s in empty} }). Check the manual dir layout:\n'
        + MANUAL_DOWNLOAD_INSTRUCTIONS
      )
    return {split: self._generate_examples(manual_dir, v) for split, v in kept.items()}

  def _wanted_ids(self, manual_dir: str) -> dict[str, list[splits.ObjectId]]:
    config = self.builder_config
    splits.check_synsets(config.synsets, f'builder config {config.name}')
    return splits.wanted_ids(
      config.split_kind,
      self._split_file,
      config.synsets,
      lambda synset: objects.list_model_ids(manual_dir, synset),
      'shapenet_r2n2',
    )

  def _generate_examples(
    self, manual_dir: str, object_ids: Sequence[splits.ObjectId]
  ) -> Iterator[tuple[str, dict]]:
    """Streams one example per object, reading its files only when it is reached."""
    for synset, model_id in object_ids:
      label = splits.SYNSETS.index(synset)
      yield f'{synset}_{model_id}', objects.load_example(manual_dir, synset, model_id, label)
