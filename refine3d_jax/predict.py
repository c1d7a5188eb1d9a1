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

Preprocessing: each photo is made to look like a 137x137 rendering (features.IMAGE_SIZE),
then goes through the evaluation path of the training protocol (input_pipeline.view_pixels
and finish_view with view_options(config, train=False): config.data.protocol's centre
crop, resize to config.model.image_size, data.mean/std):
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
from PIL import Image, ImageOps, UnidentifiedImageError

from refine3d_jax import checkpoint, cli, errors, input_pipeline, metrics, report
from refine3d_jax import visualize
from refine3d_jax.data import binvox, features, transforms
from refine3d_jax.models import Refine3DNet
from refine3d_jax.protocols import OUTPUTS

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
MAX_SIDE = 1024        # photos are shrunk to this first: the model sees 137 px at most
OBJECT_FILL = 0.7      # object's longer side / rendering side: median over the 144 ShapeNet
                       # sample renderings 0.71 (p10-p90 0.56-0.83), synthetic_shapes 0.65
OBJECT_DROP = 0.035    # object's centre below the rendering's centre / side (the cameras
                       # look down): ShapeNet sample 0.034, synthetic_shapes 0.028 (means)
BORDER = 0.03          # --background=auto: the border strip, a fraction of the shorter side
MIN_TOLERANCE = 24.0   # --background=auto: least RGB distance (of 0..255) from the border
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
      found = sorted(os.path.join(arg, f) for f in os.listdir(arg)
                     if f.lower().endswith(IMAGE_EXTENSIONS))
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
      raise ValueError(f'need uint8 or floats in [0, 1]; got {x.dtype} in '
                       f'[{x.min()}, {x.max()}]')
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
  ring[b:h - b, b:w - b] = False
  colour = np.median(x[ring], axis=0)
  distance = np.linalg.norm(x - colour, axis=-1)
  tolerance = max(MIN_TOLERANCE, 3 * float(np.median(distance[ring])))
  near, _ = ndimage.label(distance <= tolerance)
  edge = np.unique(near[ring])
  objects, count = ndimage.label(~np.isin(near, edge[edge > 0]))
  if not count:
    raise ValueError(f'--background=auto found no object: every pixel is within '
                     f'{tolerance:.0f} of the border colour {np.round(colour).astype(int)}')
  sizes = np.bincount(objects.ravel())[1:]
  keep = np.concatenate([[False], sizes >= 0.01 * sizes.max()])
  return keep[objects]


def blend(rgba: np.ndarray, alpha: np.ndarray, background: int) -> np.ndarray:
  """uint8 [H, W, 3]: the RGB of `rgba` over a uniform `background` with `alpha` [H, W]
  (uint8); alpha 0 gives exactly the background, 255 exactly the pixel."""
  a = alpha[..., None].astype(np.float32) / 255
  rgb = rgba[..., :3] * a + np.float32(background) * (1 - a)
  return np.round(rgb).astype(np.uint8)


def frame(rgb: np.ndarray, mask: np.ndarray | None, background: int,
          fill: float = OBJECT_FILL, drop: float = OBJECT_DROP) -> np.ndarray:
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
  square[t - top:b - top, l - left:r - left] = rgb[t:b, l:r]
  return transforms.resize(square, features.IMAGE_SIZE)


def to_rendering(image: np.ndarray, test_background: int, background: str = 'none',
                 framing: str = 'object') -> np.ndarray:
  """Any image -> uint8 [137, 137, 4] (opaque) framed and lit like a rendering: steps 2-4
  of the module docstring."""
  if background not in BACKGROUNDS or framing not in FRAMINGS:
    raise ValueError(f'background must be one of {BACKGROUNDS} and framing one of '
                     f'{FRAMINGS}; got {background!r}, {framing!r}')
  rgba = as_rgba(image)
  alpha, mask = rgba[..., 3], None
  if (alpha < 255).any():
    mask = alpha >= 128
  elif background == 'auto':
    mask = border_mask(rgba[..., :3])
    alpha = np.where(mask, 255, 0).astype(np.uint8)
  rgb = frame(blend(rgba, alpha, test_background), mask if framing == 'object' else None,
              test_background)
  return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)


def split_checkpoint_path(path: str) -> tuple[str, int]:
  """(workdir, step) of a checkpoint step folder `<workdir>/checkpoints/<step>`."""
  full = os.path.abspath(os.path.expanduser(path.rstrip('/')))
  parent, name = os.path.split(full)
  if not (name.isdigit() and os.path.basename(parent) == checkpoint.SUBDIR):
    raise InputError(f'{path}: not a checkpoint step folder (<workdir>/checkpoints/<step>)')
  if not os.path.isdir(full):
    raise errors.NotFoundError(f'{path}: no such checkpoint')
  return os.path.dirname(parent), int(name)


class Reconstructor:
  """A restored model with the preprocessing of its training protocol: images of one
  object -> occupancy probabilities. Reusable: one compilation per view count.

    r = Reconstructor.from_workdir('runs/quick')      # or .from_checkpoint(step folder)
    probs = r.reconstruct([photo_a, photo_b])         # float32 [S, S, S]
  """

  def __init__(self, config: ml_collections.ConfigDict, model: Refine3DNet,
               variables: dict[str, Any], step: int | None = None,
               workdir: str | None = None):
    self.config, self.model, self.variables = config, model, variables
    self.step, self.workdir = step, workdir
    self.options = input_pipeline.view_options(config, train=False)
    self._forward = jax.jit(lambda v, x: model.apply(v, x, train=False))

  @classmethod
  def from_workdir(cls, workdir: str, which: str = 'best') -> 'Reconstructor':
    """Checkpoint `which` ('best', 'latest' or a step) of a training workdir, with the
    config saved beside it. Raises FileNotFoundError naming the workdir."""
    config, model, variables, step = checkpoint.restore_trained(workdir, which)
    return cls(config, model, variables, step, workdir)

  @classmethod
  def from_checkpoint(cls, path: str) -> 'Reconstructor':
    """A checkpoint step folder `<workdir>/checkpoints/<step>`."""
    workdir, step = split_checkpoint_path(path)
    return cls.from_workdir(workdir, str(step))

  def views(self, images: Sequence[np.ndarray], background: str = 'none',
            framing: str = 'object', names: Sequence[str] | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """(model inputs float32 [V, S, S, 3], the same as pictures uint8 [V, S, S, 3]) of
    `images` (see `as_rgba`), in their order. Raises InputError naming the image (`names`,
    default 'image <i>')."""
    if not len(images):
      raise InputError('no images given')
    names = names or [f'image {i}' for i in range(len(images))]
    params = input_pipeline.sample_view_params(self.options, None)
    inputs, pictures = [], []
    for image, name in zip(images, names):
      try:
        rendering = to_rendering(image, self.options.test_background, background, framing)
      except ValueError as e:
        raise InputError(f'{name}: {e}') from None
      pixels = input_pipeline.view_pixels(rendering, self.options, params)
      pictures.append(pixels)
      inputs.append(input_pipeline.finish_view(pixels, self.options, params))
    return np.stack(inputs), np.stack(pictures)

  def predict(self, images: Sequence[np.ndarray], background: str = 'none',
              framing: str = 'object', names: Sequence[str] | None = None
              ) -> dict[str, np.ndarray]:
    """{'refined', 'coarse': float32 [S, S, S] probabilities, 'views': uint8 pictures
    [V, S, S, 3] in the given order}."""
    inputs, pictures = self.views(images, background, framing, names)
    order = sorted(range(len(inputs)), key=lambda i: hashlib.sha1(inputs[i].tobytes()).digest())
    out = self._forward(self.variables, inputs[np.asarray(order)][None])
    return {**{k: np.asarray(out[k][0]) for k in OUTPUTS}, 'views': pictures}

  def reconstruct(self, images: Sequence[np.ndarray], output: str = 'refined',
                  background: str = 'none', framing: str = 'object') -> np.ndarray:
    """float32 [S, S, S] occupancy probabilities (`output` 'refined' or 'coarse') of the
    object shown by `images` (uint8 or [0, 1] float arrays [H, W], [H, W, 3], [H, W, 4])."""
    if output not in OUTPUTS:
      raise ValueError(f'output must be one of {OUTPUTS}, got {output!r}')
    return self.predict(images, background, framing)[output]


def surface_mesh(probs: np.ndarray, threshold: float):
  """trimesh.Trimesh of the surface p = threshold, faces turned outwards (empty when no p
  exceeds it)."""
  import trimesh  # pylint: disable=g-import-not-at-top
  if not (probs > threshold).any():
    return trimesh.Trimesh()
  verts, faces = metrics.surface(probs, level=threshold)
  # marching cubes winds faces towards lower values: inwards for an occupancy
  return trimesh.Trimesh(verts, faces[:, ::-1])


def plot_preview(path: str, views: np.ndarray, labels: Sequence[str], occupied: np.ndarray,
                 title: str) -> None:
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
    ax = fig.add_subplot(grid[:, cols + 2 * k:cols + 2 * k + 2])
    ax.imshow(visualize.render_voxels(occupied, panel=256, azimuth=azimuth))
    ax.set_title(f'azimuth {azimuth}', fontsize=8)
    ax.axis('off')
  more = f' (first {shown} of {len(views)} views shown)' if shown < len(views) else ''
  fig.suptitle(title + more, fontsize=8)
  report.save_figure(fig, path, dpi=110)


def write_outputs(out_dir: str, probs: np.ndarray, threshold: float, views: np.ndarray,
                  labels: Sequence[str], title: str, info: dict[str, Any]) -> list[str]:
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
  report.write_json(os.path.join(out_dir, 'prediction.json'),
                    {**info, 'threshold': float(threshold), 'occupied': int(occupied.sum()),
                     'volume_size': int(occupied.shape[0])})
  return ['voxels.npy', 'probabilities.npy', 'model.binvox', 'mesh.obj', 'mesh.ply',
          'preview.png', 'prediction.json']


def load(workdir: str | None, which: str) -> Reconstructor:
  """The Reconstructor of --workdir / --checkpoint."""
  if which in ('best', 'latest') or which.isdigit():
    if not workdir:
      raise InputError('no model given: pass --workdir=DIR or '
                       '--checkpoint=<workdir>/checkpoints/<step>')
    return Reconstructor.from_workdir(workdir, which)
  if workdir and split_checkpoint_path(which)[0] != os.path.abspath(workdir):
    raise InputError(f'{which}: not a checkpoint of --workdir={workdir}')
  return Reconstructor.from_checkpoint(which)


def main(argv: Sequence[str]) -> None:
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.ERROR)  # orbax logs every restore at INFO and WARNING
  start = time.perf_counter()
  if _COARSE.value and _REFINED.value and _REFINED.present:
    raise InputError('--refined and --coarse exclude each other')
  output = 'coarse' if _COARSE.value or not _REFINED.value else 'refined'
  if _THRESHOLD.value is not None and not 0 < _THRESHOLD.value < 1:
    raise InputError(f'--threshold must be in (0, 1), got {_THRESHOLD.value}')
  for flag in (_WORKDIR, _CHECKPOINT, _OUT):
    if cli.is_url(flag.value):
      raise InputError(f'--{flag.name} = {flag.value}: a URL; {cli.NO_NETWORK}')
  paths = list_images(list(_IMAGES.value) + list(argv[1:]))
  images = [read_image(p) for p in paths]
  reconstructor = load(_WORKDIR.value, _CHECKPOINT.value)
  loaded = time.perf_counter()
  result = reconstructor.predict(images, _BACKGROUND.value, _FRAMING.value, names=paths)
  predicted = time.perf_counter()
  config = reconstructor.config
  threshold = config.eval.threshold if _THRESHOLD.value is None else _THRESHOLD.value
  source = (f'{config.get("preset", "?")} model trained on {config.data.dataset}, step '
            f'{reconstructor.step} of {reconstructor.workdir}')
  title = (f'{_TITLE.value or "Reconstruction"}: {len(paths)} views -> {output} volume, '
           f'p >= {threshold:g}\n{source}')
  info = dict(images=[os.path.abspath(p) for p in paths], output=output,
              workdir=os.path.abspath(reconstructor.workdir), step=int(reconstructor.step),
              background=_BACKGROUND.value, framing=_FRAMING.value,
              protocol=config.data.protocol, image_size=int(config.model.image_size),
              seconds=dict(load=loaded - start, predict=predicted - loaded))
  names = write_outputs(_OUT.value, result[output], threshold, result['views'], paths, title,
                        info)
  print(f'wrote {", ".join(names)} to {_OUT.value} ({len(paths)} views, {output}, '
        f'p >= {threshold:g}; {time.perf_counter() - start:.1f} s)')


if __name__ == '__main__':
  # Flags are defined only when run as a program, so importing this module (notebooks,
  # tests) defines none.
  _WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (its checkpoints and the '
                                 'config saved with them).')
  _CHECKPOINT = flags.DEFINE_string('checkpoint', 'best', "'best', 'latest', a step number, or "
                                    'a step folder <workdir>/checkpoints/<step> (then no '
                                    '--workdir).')
  _IMAGES = flags.DEFINE_list('images', [], 'Images of one object (PNG/JPEG files or folders); '
                              'more may follow as plain arguments: --images a.png b.jpg.')
  _OUT = flags.DEFINE_string('out', None, 'Output folder.', required=True)
  _THRESHOLD = flags.DEFINE_float('threshold', None, 'Occupancy threshold (default: the '
                                  "config's eval.threshold).")
  _REFINED = flags.DEFINE_bool('refined', True, "Export the refiner's output (the default).")
  _COARSE = flags.DEFINE_bool('coarse', False, "Export the decoder's coarse volume instead.")
  _BACKGROUND = flags.DEFINE_enum('background', 'none', BACKGROUNDS, "'auto': photos on a plain "
                                  'background; it is found from the border and made uniform.')
  _FRAMING = flags.DEFINE_enum('framing', 'object', FRAMINGS, "'object': square around the "
                               "object (needs alpha or --background=auto); 'image': the "
                               "image's centred square.")
  _TITLE = flags.DEFINE_string('title', None, "The preview's title (say what the views are).")
  cli.run(main)
