"""Lighting shared by the renderers: ambient, a key light, a sky fill and a highlight.

A `Light` is fixed per object; its key direction is in the camera frame (right, up,
forward; negative forward points back at the camera), so the key light moves with each view
as a photographer's would. `CAMERA_LIGHT` is the synthetic set's original fixed light;
`sample_light` draws a random one per object, so shading alone does not give away the
object's shape or category.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Light:
  ambient: float
  key: float
  sky: float  # fill from above: weight of max(normal . world up, 0)
  direction: tuple[float, float, float]  # unit key direction, camera frame
  specular: float = 0.0  # Blinn-Phong highlight weight (white)
  shininess: float = 16.0


def _unit(v) -> tuple[float, float, float]:
  v = np.asarray(v, np.float64)
  return tuple(float(x) for x in v / np.linalg.norm(v))


CAMERA_LIGHT = Light(0.28, 0.52, 0.25, _unit([-0.45, 0.55, -0.70]))


def sample_light(rng: np.random.Generator) -> Light:
  """A random light: key from the camera's side of the object, above or beside it."""
  direction = _unit([rng.uniform(-1, 1), rng.uniform(-0.2, 1), -rng.uniform(0.3, 1)])
  return Light(
    ambient=float(rng.uniform(0.15, 0.4)),
    key=float(rng.uniform(0.35, 0.75)),
    sky=float(rng.uniform(0.0, 0.35)),
    direction=direction,
    specular=float(rng.uniform(0.0, 0.35)),
    shininess=float(rng.uniform(6, 40)),
  )


def sample_colour(rng: np.random.Generator) -> np.ndarray:
  """A random base colour [3] in [0.05, 1]: any hue, mid to high saturation and value."""
  hue, sat, val = rng.uniform(0, 1), rng.uniform(0.2, 0.9), rng.uniform(0.35, 0.95)
  rgb = np.clip(np.abs((hue * 6 + np.array([0, 4, 2])) % 6 - 3) - 1, 0, 1)
  return np.clip(val * (1 - sat + sat * rgb), 0.05, 1.0)


def shade(
  normals: np.ndarray, views: np.ndarray, rot: np.ndarray, light: Light, colour: np.ndarray
) -> np.ndarray:
  """RGB [N, 3] in [0, 1] of surface points with unit world normals [N, 3] seen in views [N].

  rot [V, 3, 3]: world-to-camera rotations (rows right, up, forward); colour [3] or [N, 3].
  """
  n = normals
  key = np.asarray(light.direction) @ rot  # [V, 3], world frame
  k = key[views]
  lambert = np.maximum(n[:, 0] * k[:, 0] + n[:, 1] * k[:, 1] + n[:, 2] * k[:, 2], 0)
  intensity = light.ambient + light.key * lambert + light.sky * np.maximum(n[:, 1], 0)
  rgb = intensity[:, None] * colour
  if light.specular:
    half = k - rot[views, 2]  # towards the light + towards the camera
    half /= np.linalg.norm(half, axis=-1, keepdims=True)
    spec = np.maximum((n * half).sum(-1), 0) ** light.shininess
    rgb = rgb + light.specular * spec[:, None]
  return np.clip(rgb, 0, 1)
