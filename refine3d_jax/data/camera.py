"""R2N2's camera, recovered from the real data (see `tests/synthetic_shapes_test.py`).

A view's metadata row is (azimuth, elevation, in-plane rotation, distance ratio, fov) in
degrees/ratio. As in R2N2's Blender renderings, the object has a unit bounding-box diagonal
and is centred on its bounding box; the camera sits at distance ratio * 1.75 at
  C = d (cos el cos az, sin el, cos el sin az)   (y up)
looks at the origin with y up, and projects with Blender's 35 mm lens on a 32 mm sensor
(focal 35/32 * 137 px, horizontal fov 49.1 degrees). The recorded fov (25) is not the one
used for projection, as in the real metadata. The voxel grid is the cube of the object's
longest side, centred at the origin. Projecting real ShapeNetVox32 voxels this way matches
the real alpha masks with IoU ~0.9.
"""

import numpy as np

from refine3d_jax.data import features

CAM_MAX_DIST = 1.75
FOCAL_PX = 35.0 / 32.0 * features.IMAGE_SIZE
ELEVATION_RANGE = (25.0, 30.0)
DISTANCE_RANGE = (0.65, 0.95)
RECORDED_FOV = 25.0


def sample_cameras(rng: np.random.Generator, num_views: int = features.NUM_VIEWS) -> np.ndarray:
  """[num_views, 5] float32 metadata rows in CAMERA_FIELDS order, R2N2's ranges."""
  cam = np.zeros((num_views, 5), np.float32)
  cam[:, 0] = rng.uniform(0.0, 360.0, num_views)
  cam[:, 1] = rng.uniform(*ELEVATION_RANGE, num_views)
  cam[:, 3] = rng.uniform(*DISTANCE_RANGE, num_views)
  cam[:, 4] = RECORDED_FOV
  return cam


def frames(camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Camera centres [V, 3] and world-to-camera rotations [V, 3, 3] (rows: right, up, forward)."""
  az, el = np.radians(camera[:, 0]), np.radians(camera[:, 1])
  d = camera[:, 3] * CAM_MAX_DIST
  centre = d[:, None] * np.stack([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)], -1)
  fwd = -centre / d[:, None]
  right = np.cross(fwd, [0.0, 1.0, 0.0])
  right /= np.linalg.norm(right, axis=-1, keepdims=True)
  up = np.cross(right, fwd)
  return centre, np.stack([right, up, fwd], 1)


def project(points: np.ndarray, camera: np.ndarray, size: int = features.IMAGE_SIZE) -> np.ndarray:
  """Pixel coordinates (x right, y down) [V, N, 2] of world points [N, 3] in every view."""
  centre, rot = frames(camera)
  pc = np.einsum('vij,vnj->vni', rot, points[None] - centre[:, None])
  xy = pc[..., :2] / pc[..., 2:]
  return np.stack([size / 2 + FOCAL_PX * xy[..., 0], size / 2 - FOCAL_PX * xy[..., 1]], -1)


def voxel_silhouettes(
  voxels: np.ndarray,
  side: float,
  camera: np.ndarray,
  size: int = features.IMAGE_SIZE,
  samples: int = 4,
) -> np.ndarray:
  """[V, size, size] bool masks of the occupied voxels [32, 32, 32] of a grid of `side`."""
  n = voxels.shape[0]
  idx = np.argwhere(voxels).astype(np.float64)
  off = (
    np.stack(np.meshgrid(*[np.arange(samples)] * 3, indexing='ij'), -1).reshape(-1, 3) + 0.5
  ) / samples
  pts = (idx[:, None] + off[None]).reshape(-1, 3) / n * side - side / 2
  px = np.floor(project(pts, camera, size)).astype(np.int64)
  masks = np.zeros((len(camera), size, size), bool)
  ok = np.all((px >= 0) & (px < size), -1)
  view = np.broadcast_to(np.arange(len(camera))[:, None], ok.shape)
  masks[view[ok], px[..., 1][ok], px[..., 0][ok]] = True
  return masks
