"""Procedural objects as lists of analytic primitives, in ShapeNet's canonical frame.

Frame: y up (voxel axis 1 after the peers' (0, 2, 1) transpose), objects long along x.
An object is a list of (kind, params [K]) pairs; primitives (all solid):
  box       [6]   centre c [3], half extents h [3] (axis-aligned)
  cylinder  [8]   centre c [3], unit axis a [3], radius r, half length h (any orientation)
  ellipsoid [6]   centre c [3], radii r [3] (axis-aligned)
  obox      [15]  centre c [3], half extents h [3], rotation W [3, 3] row-major whose rows
                  are the box's own axes in the world frame (local = W (p - c))
  tube      [9]   centre c [3], unit axis a [3], outer radius r, inner radius q < r, half
                  length h: a cylinder with a coaxial hole through it, open at both ends
This module holds the primitives, the geometry helpers and the 'simple' categories (one
colour, nearly determined by one view); `hard_shapes` holds the 'hard' ones.
`normalize` recentres an object on its bounding-box centre and scales it to a unit
bounding-box diagonal, as ShapeNet's models are.
"""

from typing import Callable

import numpy as np


def box(c, h) -> tuple[str, np.ndarray]:
  """Axis-aligned box: centre c [3], half extents h [3]."""
  return ('box', np.r_[c, h].astype(float))


def cyl(c, a, r, h) -> tuple[str, np.ndarray]:
  """Cylinder: centre c [3], axis a [3] (normalised here), radius r, half length h."""
  a = np.asarray(a, float)
  return ('cylinder', np.r_[c, a / np.linalg.norm(a), r, h])


def ell(c, r) -> tuple[str, np.ndarray]:
  """Axis-aligned ellipsoid: centre c [3], radii r [3]."""
  return ('ellipsoid', np.r_[c, r].astype(float))


def rot_y(angle: float) -> np.ndarray:
  """[3, 3] rotation by `angle` radians about the vertical (y) axis, local to world."""
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def obox(c, h, rot) -> tuple[str, np.ndarray]:
  """Oriented box: centre c [3], half extents h [3], rot [3, 3] local-to-world rotation."""
  return ('obox', np.r_[c, h, np.asarray(rot, float).T.ravel()])


def tube(c, a, r, q, h) -> tuple[str, np.ndarray]:
  """Open tube: centre c [3], axis a [3], outer radius r, inner radius q, half length h."""
  a = np.asarray(a, float)
  return ('tube', np.r_[c, a / np.linalg.norm(a), r, q, h])


def rotate_y(parts: list, angle: float, pivot) -> list:
  """`parts` turned by `angle` radians about the vertical axis through pivot [3].

  Boxes become oriented boxes; round (r_x == r_z) ellipsoids only.
  """
  rot, pivot = rot_y(angle), np.asarray(pivot, float)
  out = []
  for kind, p in parts:
    c = pivot + rot @ (p[:3] - pivot)
    if kind in ('cylinder', 'tube'):
      out.append((kind, np.r_[c, rot @ p[3:6], p[6:]]))
    elif kind == 'box':
      out.append(obox(c, p[3:6], rot))
    elif kind == 'obox':
      out.append(obox(c, p[3:6], rot @ p[6:15].reshape(3, 3).T))
    elif np.isclose(p[3], p[5]):
      out.append(ell(c, p[3:6]))
    else:
      raise ValueError('only round ellipsoids can be turned')
  return out


def chair(rng: np.random.Generator) -> list:
  """Seat, back, four legs (boxes or cylinders), optional arm rests."""
  w, d = rng.uniform(0.40, 0.60), rng.uniform(0.38, 0.58)
  leg_h, seat_t = rng.uniform(0.35, 0.50), rng.uniform(0.04, 0.08)
  back_h, back_t = rng.uniform(0.35, 0.65), rng.uniform(0.03, 0.07)
  leg_r = rng.uniform(0.022, 0.04)
  parts = [
    box([0, leg_h + seat_t / 2, 0], [w / 2, seat_t / 2, d / 2]),
    box(
      [0, leg_h + seat_t + back_h / 2, -d / 2 + back_t / 2],
      [w / 2 * rng.uniform(0.8, 1.0), back_h / 2, back_t / 2],
    ),
  ]
  round_legs = rng.random() < 0.5
  for sx in (-1, 1):
    for sz in (-1, 1):
      c = [sx * (w / 2 - leg_r), leg_h / 2, sz * (d / 2 - leg_r)]
      parts.append(
        cyl(c, [0, 1, 0], leg_r, leg_h / 2) if round_legs else box(c, [leg_r, leg_h / 2, leg_r])
      )
  if rng.random() < 0.4:
    arm_y = leg_h + seat_t + rng.uniform(0.15, 0.25)
    for sx in (-1, 1):
      parts.append(box([sx * (w / 2 - 0.025), arm_y, 0], [0.025, 0.02, d / 2]))
      parts.append(
        box(
          [sx * (w / 2 - 0.025), (arm_y + leg_h + seat_t) / 2, d / 2 - 0.03],
          [0.02, (arm_y - leg_h - seat_t) / 2, 0.02],
        )
      )
  return parts


def table(rng: np.random.Generator) -> list:
  """Top (box or round) on four legs or on a pedestal with a foot."""
  w, d = rng.uniform(0.8, 1.6), rng.uniform(0.5, 1.0)
  h, top_t = rng.uniform(0.45, 0.8), rng.uniform(0.03, 0.07)
  round_top = rng.random() < 0.3
  if round_top:
    d = w = rng.uniform(0.6, 1.1)
    parts = [cyl([0, h - top_t / 2, 0], [0, 1, 0], w / 2, top_t / 2)]
  else:
    parts = [box([0, h - top_t / 2, 0], [w / 2, top_t / 2, d / 2])]
  if round_top or rng.random() < 0.25:
    parts.append(cyl([0, (h - top_t) / 2, 0], [0, 1, 0], rng.uniform(0.04, 0.08), (h - top_t) / 2))
    parts.append(cyl([0, 0.02, 0], [0, 1, 0], rng.uniform(0.18, 0.3), 0.02))
  else:
    leg = rng.uniform(0.025, 0.05)
    inset = rng.uniform(0.0, 0.1)
    for sx in (-1, 1):
      for sz in (-1, 1):
        parts.append(
          box(
            [sx * (w / 2 - leg - inset), (h - top_t) / 2, sz * (d / 2 - leg - inset * d / w)],
            [leg, (h - top_t) / 2, leg],
          )
        )
  return parts


def lamp(rng: np.random.Generator) -> list:
  """Base, pole, optional tilted arm, and a shade (cylinder or ellipsoid)."""
  base_r, base_t = rng.uniform(0.12, 0.22), rng.uniform(0.02, 0.05)
  pole_h, pole_r = rng.uniform(0.5, 1.0), rng.uniform(0.015, 0.03)
  parts = [
    cyl([0, base_t / 2, 0], [0, 1, 0], base_r, base_t / 2),
    cyl([0, base_t + pole_h / 2, 0], [0, 1, 0], pole_r, pole_h / 2),
  ]
  top = np.array([0.0, base_t + pole_h, 0.0])
  if rng.random() < 0.5:  # desk lamp: an arm tilted towards +x
    ang = np.radians(rng.uniform(20, 70))
    arm_len = rng.uniform(0.25, 0.45)
    a = np.array([np.sin(ang), np.cos(ang), 0.0])
    parts.append(cyl(top + a * arm_len / 2, a, pole_r, arm_len / 2))
    top = top + a * arm_len
  shade_r, shade_h = rng.uniform(0.12, 0.25), rng.uniform(0.12, 0.28)
  if rng.random() < 0.5:
    parts.append(cyl(top + [0, shade_h / 4, 0], [0, 1, 0], shade_r, shade_h / 2))
  else:
    parts.append(ell(top + [0, shade_h / 4, 0], [shade_r, shade_h / 2, shade_r]))
  return parts


def car(rng: np.random.Generator) -> list:
  """Body, cabin (box or ellipsoid), four wheels with axles along z."""
  length, width = rng.uniform(0.9, 1.3), rng.uniform(0.38, 0.52)
  body_h, wheel_r = rng.uniform(0.15, 0.25), rng.uniform(0.08, 0.13)
  clearance = wheel_r * rng.uniform(0.6, 0.9)
  body_y = clearance + body_h / 2
  parts = [box([0, body_y, 0], [length / 2, body_h / 2, width / 2])]
  cab_l, cab_h = length * rng.uniform(0.35, 0.6), rng.uniform(0.12, 0.22)
  cab_x = length * rng.uniform(-0.15, 0.1)
  cab_y = clearance + body_h + cab_h / 2
  if rng.random() < 0.5:
    parts.append(box([cab_x, cab_y, 0], [cab_l / 2, cab_h / 2, width / 2 * 0.9]))
  else:
    parts.append(ell([cab_x, cab_y - cab_h / 2, 0], [cab_l / 2, cab_h, width / 2 * 0.9]))
  wheel_x = length / 2 - wheel_r * rng.uniform(1.2, 1.8)
  for sx in (-1, 1):
    for sz in (-1, 1):
      parts.append(
        cyl(
          [sx * wheel_x, wheel_r, sz * (width / 2 - 0.02)],
          [0, 0, 1],
          wheel_r,
          rng.uniform(0.03, 0.05),
        )
      )
  return parts


def aeroplane(rng: np.random.Generator) -> list:
  """Fuselage ellipsoid along x, swept-free main wings, tail plane, fin, engines."""
  length, fus_r = rng.uniform(1.0, 1.5), rng.uniform(0.06, 0.11)
  span, chord = rng.uniform(0.9, 1.6), rng.uniform(0.12, 0.25)
  wing_x, wing_t = rng.uniform(-0.1, 0.1), rng.uniform(0.02, 0.035)
  wing_y = fus_r * rng.uniform(-0.6, 0.6)
  parts = [
    ell([0, 0, 0], [length / 2, fus_r, fus_r]),
    box([wing_x, wing_y, 0], [chord / 2, wing_t / 2, span / 2]),
  ]
  tail_x = -length / 2 + chord * 0.4
  tail_span = span * rng.uniform(0.25, 0.4)
  parts.append(box([tail_x, 0, 0], [chord * 0.3, wing_t / 2, tail_span / 2]))
  fin_h = rng.uniform(0.12, 0.25)
  parts.append(box([tail_x, fin_h / 2 + fus_r * 0.5, 0], [chord * 0.35, fin_h / 2, wing_t / 2]))
  n_eng = rng.integers(0, 3)  # engine pairs under the wings
  for k in range(n_eng):
    z = span / 2 * (0.3 + 0.35 * k)
    for sz in (-1, 1):
      parts.append(
        cyl(
          [wing_x + 0.05, wing_y - 0.05, sz * z],
          [1, 0, 0],
          rng.uniform(0.03, 0.05),
          rng.uniform(0.07, 0.12),
        )
      )
  return parts


CATEGORIES: dict[str, Callable[[np.random.Generator], list]] = {
  f.__name__: f for f in (chair, table, lamp, car, aeroplane)
}
CATEGORY_NAMES = tuple(CATEGORIES)


def part_bounds(kind: str, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Bounding boxes (lo [N, 3], hi [N, 3]) of N primitives of one kind, params [N, K]."""
  c = params[:, :3]
  if kind in ('cylinder', 'tube'):
    a, r, h = params[:, 3:6], params[:, 6:7], params[:, -1:]
    ext = h * np.abs(a) + r * np.sqrt(np.clip(1 - a**2, 0, 1))
  elif kind == 'obox':  # |W|^T h: each local axis' extent along each world axis
    ext = np.einsum('nij,ni->nj', np.abs(params[:, 6:15].reshape(-1, 3, 3)), params[:, 3:6])
  else:
    ext = params[:, 3:6]
  return c - ext, c + ext


def bounds(parts: list) -> tuple[np.ndarray, np.ndarray]:
  """Axis-aligned bounding box (lo [3], hi [3]) of the primitives."""
  lo, hi = zip(*(part_bounds(kind, p[None]) for kind, p in parts))
  return np.concatenate(lo).min(0), np.concatenate(hi).max(0)


# The lengths in each kind's params, scaled by `normalize` (centres are handled apart).
_LENGTHS = {
  'box': slice(3, 6),
  'ellipsoid': slice(3, 6),
  'obox': slice(3, 6),
  'cylinder': slice(6, 8),
  'tube': slice(6, 9),
}


def normalize(parts: list) -> tuple[list, float]:
  """Centres the bounding box at 0 and scales to unit diagonal; returns (parts, longest side)."""
  lo, hi = bounds(parts)
  centre, scale = (lo + hi) / 2, 1.0 / np.linalg.norm(hi - lo)
  out = []
  for kind, p in parts:
    q = p.copy()
    q[:3] = (p[:3] - centre) * scale
    q[_LENGTHS[kind]] *= scale
    out.append((kind, q))
  return out, float(np.max(hi - lo) * scale)
