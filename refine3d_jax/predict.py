r"""Reconstruct one object from your own photos with a trained workdir.

  python -m refine3d_jax.predict --workdir=runs/quick --images a.png b.jpg ... --out=OUT
      [--checkpoint=best|latest|STEP|<workdir>/checkpoints/<step>] [--background=auto]
      [--threshold=0.3] [--coarse] [--framing=object|image] [--title=TEXT]

  r = Reconstructor.from_workdir('runs/quick')              # in a notebook
  probs = r.reconstruct([np.asarray(Image.open(p)) for p in paths])  # float32 [S, S, S]

`--images` takes files and folders (their PNG and JPEG files, sorted), any count >= 1, any
order: the views are fed to the model in an order fixed by their content, so a permutation
gives bit-identical outputs. Writes into OUT (each file atomically):
  voxels.npy         bool [S, S, S], p >= threshold (default config.eval.threshold), axes as
                     the dataset's (x, y up, z); S = config.model.volume_size
  probabilities.npy  float32 [S, S, S] occupancy probabilities (refined, or --coarse)
  model.binvox       the voxels as binvox (`#binvox 1`, dim, translate 0 0 0, scale 1; the
                     file's x, z, y order), as ShapeNetVox32
  mesh.obj, mesh.ply marching cubes of the probabilities at the threshold (scikit-image),
                     closed, in the binvox frame: voxel i's centre at (i + 0.5) / S, y up
  preview.png        the views as the model sees them beside the voxels from two sides
  prediction.json    inputs, checkpoint, options, voxel count and timings

Preprocessing: each photo is made to look like a 137x137 rendering (data/photos.py:
decode, object mask from alpha or --background=auto, blend onto data.test_background,
framing), then goes through the evaluation path of the training protocol
(data/views.py's view_pixels and finish_view with view_options(config, train=False):
config.data.protocol's centre crop, resize to config.model.image_size, data.mean/std).

Bad input is one line on stderr, `error: <path>: <reason>`, and exit status 1.
"""

import hashlib
import os
import time
from typing import Any, Sequence

from absl import flags, logging
import jax
import ml_collections
import numpy as np

from refine3d_jax import checkpoint, cli, errors, metrics, parallel, report, trained, visualize
from refine3d_jax.data import binvox, photos
from refine3d_jax.data import views as views_lib
from refine3d_jax.models import Refine3DNet
from refine3d_jax.protocols import OUTPUTS


def split_checkpoint_path(path: str) -> tuple[str, int]:
  """(workdir, step) of a checkpoint step folder `<workdir>/checkpoints/<step>`."""
  full = os.path.abspath(os.path.expanduser(path.rstrip('/')))
  parent, name = os.path.split(full)
  if not (name.isdigit() and os.path.basename(parent) == checkpoint.SUBDIR):
    raise photos.InputError(f'{path}: not a checkpoint step folder (<workdir>/checkpoints/<step>)')
  if not os.path.isdir(full):
    raise errors.NotFoundError(f'{path}: no such checkpoint')
  return os.path.dirname(parent), int(name)


class Reconstructor:
  """A restored model with the preprocessing of its training protocol: images of one
  object -> occupancy probabilities. Reusable: one compilation per view count.

    r = Reconstructor.from_workdir('runs/quick')      # or .from_checkpoint(step folder)
    probs = r.reconstruct([photo_a, photo_b])         # float32 [S, S, S]
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    model: Refine3DNet,
    variables: dict[str, Any],
    step: int | None = None,
    workdir: str | None = None,
  ):
    self.config, self.model, self.variables = config, model, variables
    self.step, self.workdir = step, workdir
    self.options = views_lib.view_options(config, train=False)
    self._forward = jax.jit(
      lambda v, x: model.apply(v, x, train=False),
      compiler_options=parallel.single_device_options(),
    )

  @classmethod
  def from_workdir(cls, workdir: str, which: str = 'best') -> 'Reconstructor':
    """Checkpoint `which` ('best', 'latest' or a step) of a training workdir, with the
    config saved beside it. Raises FileNotFoundError naming the workdir."""
    config, model, variables, step = trained.restore_trained(workdir, which)
    return cls(config, model, variables, step, workdir)

  @classmethod
  def from_checkpoint(cls, path: str) -> 'Reconstructor':
    """A checkpoint step folder `<workdir>/checkpoints/<step>`."""
    workdir, step = split_checkpoint_path(path)
    return cls.from_workdir(workdir, str(step))

  def views(
    self,
    images: Sequence[np.ndarray],
    background: str = 'none',
    framing: str = 'object',
    names: Sequence[str] | None = None,
  ) -> tuple[np.ndarray, np.ndarray]:
    """(model inputs float32 [V, S, S, 3], the same as pictures uint8 [V, S, S, 3]) of
    `images` (see `photos.as_rgba`), in their order. Raises photos.InputError naming the
    image (`names`, default 'image <i>')."""
    if not len(images):
      raise photos.InputError('no images given')
    names = names or [f'image {i}' for i in range(len(images))]
    params = views_lib.sample_view_params(self.options, None)
    inputs, pictures = [], []
    for image, name in zip(images, names):
      try:
        rendering = photos.to_rendering(image, self.options.test_background, background, framing)
      except ValueError as e:
        raise photos.InputError(f'{name}: {e}') from None
      pixels = views_lib.view_pixels(rendering, self.options, params)
      pictures.append(pixels)
      inputs.append(views_lib.finish_view(pixels, self.options, params))
    return np.stack(inputs), np.stack(pictures)

  def predict(self, images: Sequence[np.ndarray], **photo_options) -> dict[str, np.ndarray]:
    """{'refined', 'coarse': float32 [S, S, S] probabilities, 'views': uint8 pictures
    [V, S, S, 3] in the given order}; `photo_options` (background, framing, names) as in
    `views`."""
    inputs, pictures = self.views(images, **photo_options)
    order = sorted(range(len(inputs)), key=lambda i: hashlib.sha1(inputs[i].tobytes()).digest())
    out = self._forward(self.variables, inputs[np.asarray(order)][None])
    return {**{k: np.asarray(out[k][0]) for k in OUTPUTS}, 'views': pictures}

  def reconstruct(
    self,
    images: Sequence[np.ndarray],
    output: str = 'refined',
    background: str = 'none',
    framing: str = 'object',
  ) -> np.ndarray:
    """float32 [S, S, S] occupancy probabilities (`output` 'refined' or 'coarse') of the
    object shown by `images` (uint8 or [0, 1] float arrays [H, W], [H, W, 3], [H, W, 4])."""
    if output not in OUTPUTS:
      raise ValueError(f'output must be one of {OUTPUTS}, got {output!r}')
    return self.predict(images, background=background, framing=framing)[output]


def surface_mesh(probs: np.ndarray, threshold: float):
  """trimesh.Trimesh of the surface p = threshold, faces turned outwards (empty when no p
  exceeds it)."""
  import trimesh  # pylint: disable=g-import-not-at-top

  if not (probs > threshold).any():
    return trimesh.Trimesh()
  verts, faces = metrics.surface(probs, level=threshold)
  # marching cubes winds faces towards lower values: inwards for an occupancy
  return trimesh.Trimesh(verts, faces[:, ::-1])


def plot_preview(
  path: str, views: np.ndarray, labels: Sequence[str], occupied: np.ndarray, title: str
) -> None:
  """preview.png: the views [V, S, S, 3] (at most 8) beside the voxels from azimuths 40 and
  220 (front-right and back-left)."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  shown = min(len(views), 8)
  cols = -(-shown // 2)
  fig = Figure(figsize=(1.6 * cols + 6.4, 3.6))
  grid = fig.add_gridspec(2, cols + 4)
  for i in range(shown):
    ax = fig.add_subplot(grid[i // cols, i % cols])
    ax.imshow(views[i], interpolation='nearest')
    ax.set_title(os.path.basename(labels[i])[:18], fontsize=6)
    ax.axis('off')
  for k, azimuth in enumerate((40, 220)):
    ax = fig.add_subplot(grid[:, cols + 2 * k : cols + 2 * k + 2])
    ax.imshow(visualize.render_voxels(occupied, panel=256, azimuth=azimuth))
    ax.set_title(f'azimuth {azimuth}', fontsize=8)
    ax.axis('off')
  more = f' (first {shown} of {len(views)} views shown)' if shown < len(views) else ''
  fig.suptitle(title + more, fontsize=8)
  report.save_figure(fig, path, dpi=110)


def write_outputs(
  out_dir: str,
  probs: np.ndarray,
  threshold: float,
  views: np.ndarray,
  labels: Sequence[str],
  title: str,
  info: dict[str, Any],
) -> list[str]:
  """Every file of the module docstring into `out_dir`, each atomically; returns their
  names. `info` goes into prediction.json (with the voxel count added)."""
  probs = np.asarray(probs, np.float32)
  occupied = probs >= threshold
  for name, array in (('voxels.npy', occupied), ('probabilities.npy', probs)):
    with report.atomic_write(os.path.join(out_dir, name), 'wb') as f:
      np.save(f, array)
  binvox.write_binvox(os.path.join(out_dir, 'model.binvox'), occupied)
  mesh = surface_mesh(probs, threshold)
  for ext in ('obj', 'ply'):
    data = mesh.export(file_type=ext)
    if ext == 'obj' and not len(mesh.faces):  # trimesh would write bare 'v' and 'f' lines
      data = f'# no voxel reaches p >= {threshold}\n'
    with report.atomic_write(os.path.join(out_dir, f'mesh.{ext}'), 'wb') as f:
      f.write(data.encode() if isinstance(data, str) else data)
  plot_preview(os.path.join(out_dir, 'preview.png'), views, labels, occupied, title)
  report.write_json(
    os.path.join(out_dir, 'prediction.json'),
    {
      **info,
      'threshold': float(threshold),
      'occupied': int(occupied.sum()),
      'volume_size': int(occupied.shape[0]),
    },
  )
  return [
    'voxels.npy',
    'probabilities.npy',
    'model.binvox',
    'mesh.obj',
    'mesh.ply',
    'preview.png',
    'prediction.json',
  ]


def load(workdir: str | None, which: str) -> Reconstructor:
  """The Reconstructor of --workdir / --checkpoint."""
  if which in ('best', 'latest') or which.isdigit():
    if not workdir:
      raise photos.InputError(
        'no model given: pass --workdir=DIR or --checkpoint=<workdir>/checkpoints/<step>'
      )
    return Reconstructor.from_workdir(workdir, which)
  if workdir and split_checkpoint_path(which)[0] != os.path.abspath(workdir):
    raise photos.InputError(f'{which}: not a checkpoint of --workdir={workdir}')
  return Reconstructor.from_checkpoint(which)


def main(argv: Sequence[str]) -> None:
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.ERROR)  # orbax logs every restore at INFO and WARNING
  start = time.perf_counter()
  if _COARSE.value and _REFINED.value and _REFINED.present:
    raise photos.InputError('--refined and --coarse exclude each other')
  output = 'coarse' if _COARSE.value or not _REFINED.value else 'refined'
  if _THRESHOLD.value is not None and not 0 < _THRESHOLD.value < 1:
    raise photos.InputError(f'--threshold must be in (0, 1), got {_THRESHOLD.value}')
  for flag in (_WORKDIR, _CHECKPOINT, _OUT):
    if cli.is_url(flag.value):
      raise photos.InputError(f'--{flag.name} = {flag.value}: a URL; {cli.NO_NETWORK}')
  paths = photos.list_images(list(_IMAGES.value) + list(argv[1:]))
  images = [photos.read_image(p) for p in paths]
  reconstructor = load(_WORKDIR.value, _CHECKPOINT.value)
  loaded = time.perf_counter()
  result = reconstructor.predict(
    images, background=_BACKGROUND.value, framing=_FRAMING.value, names=paths
  )
  predicted = time.perf_counter()
  config = reconstructor.config
  threshold = config.eval.threshold if _THRESHOLD.value is None else _THRESHOLD.value
  source = (
    f'{config.get("preset", "?")} model trained on {config.data.dataset}, step '
    f'{reconstructor.step} of {reconstructor.workdir}'
  )
  title = (
    f'{_TITLE.value or "Reconstruction"}: {len(paths)} views -> {output} volume, '
    f'p >= {threshold:g}\n{source}'
  )
  info = dict(
    images=[os.path.abspath(p) for p in paths],
    output=output,
    workdir=os.path.abspath(reconstructor.workdir),
    step=int(reconstructor.step),
    background=_BACKGROUND.value,
    framing=_FRAMING.value,
    protocol=config.data.protocol,
    image_size=int(config.model.image_size),
    seconds=dict(load=loaded - start, predict=predicted - loaded),
  )
  names = write_outputs(_OUT.value, result[output], threshold, result['views'], paths, title, info)
  print(
    f'wrote {", ".join(names)} to {_OUT.value} ({len(paths)} views, {output}, '
    f'p >= {threshold:g}; {time.perf_counter() - start:.1f} s)'
  )


if __name__ == '__main__':
  # Flags are defined only when run as a program, so importing this module (notebooks,
  # tests) defines none.
  _WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Training workdir (its checkpoints and the config saved with them).'
  )
  _CHECKPOINT = flags.DEFINE_string(
    'checkpoint',
    'best',
    "'best', 'latest', a step number, or "
    'a step folder <workdir>/checkpoints/<step> (then no '
    '--workdir).',
  )
  _IMAGES = flags.DEFINE_list(
    'images',
    [],
    'Images of one object (PNG/JPEG files or folders); '
    'more may follow as plain arguments: --images a.png b.jpg.',
  )
  _OUT = flags.DEFINE_string('out', None, 'Output folder.', required=True)
  _THRESHOLD = flags.DEFINE_float(
    'threshold', None, "Occupancy threshold (default: the config's eval.threshold)."
  )
  _REFINED = flags.DEFINE_bool('refined', True, "Export the refiner's output (the default).")
  _COARSE = flags.DEFINE_bool('coarse', False, "Export the decoder's coarse volume instead.")
  _BACKGROUND = flags.DEFINE_enum(
    'background',
    'none',
    photos.BACKGROUNDS,
    "'auto': photos on a plain background; it is found from the border and made uniform.",
  )
  _FRAMING = flags.DEFINE_enum(
    'framing',
    'object',
    photos.FRAMINGS,
    "'object': square "
    'around the object (needs alpha or --background=auto); '
    "'image': the image's centred square.",
  )
  _TITLE = flags.DEFINE_string('title', None, "The preview's title (say what the views are).")
  cli.run(main)
