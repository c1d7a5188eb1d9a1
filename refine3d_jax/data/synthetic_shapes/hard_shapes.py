"""The 'hard' categories: objects one view leaves ambiguous.

Same five categories, canonical frame and primitives as `shapes` (y up, long along x), but
with what a single view cannot settle: parts on one side only (one arm rest, a tablet arm,
a drawer block, a lamp arm towards any direction, a roof box or spoiler at one end, unequal
engines, a pod under one wing), openings seen from some angles only (a desk's cabinet open
on one random side, a chair's open-frame back, a lamp shade open at one end, a pickup's
bed), sub-assemblies turned about the vertical axis (star bases, crossed feet, lamp bases)
and random part counts. Every function maps a generator to a list of (kind, params [K])
primitives in unnormalised units (see `shapes`); each part touches the rest. The
sub-assemblies they are built of are in `hard_parts`.
"""

from typing import Callable

import numpy as np

from refine3d_jax.data.synthetic_shapes.hard_parts import (
  beam,
  car_ends,
  car_sides,
  chair_side,
  desk,
  engines,
  frame_back,
  legs_and_more,
  pickup_bed,
  shade,
  random_sign,
  star_base,
  tail,
)
from refine3d_jax.data.synthetic_shapes.shapes import box, cyl, ell, obox, rot_y


def chair(rng: np.random.Generator) -> list:
  """Seat; solid or open back; four legs (maybe braced) or a turned star base; 0-2 arms."""
  w, d = rng.uniform(0.42, 0.62), rng.uniform(0.40, 0.58)
  leg_h, seat_t = rng.uniform(0.35, 0.50), rng.uniform(0.04, 0.08)
  back_h, back_t = rng.uniform(0.35, 0.65), rng.uniform(0.035, 0.06)
  y0, zb = leg_h + seat_t, -d / 2 + back_t / 2
  parts = [box([0, leg_h + seat_t / 2, 0], [w / 2, seat_t / 2, d / 2])]
  if rng.random() < 0.3:
    parts.append(box([0, y0 + back_h / 2, zb], [w / 2, back_h / 2, back_t / 2]))
  else:
    parts += frame_back(rng, w, zb, y0, back_h, back_t)
  if rng.random() < 0.35:
    parts.append(cyl([0, leg_h / 2, 0], [0, 1, 0], rng.uniform(0.03, 0.05), leg_h / 2))
    parts += star_base(rng, 0.04, max(w, d) * rng.uniform(0.45, 0.65), int(rng.integers(3, 6)))
  else:
    r = rng.uniform(0.022, 0.04)
    for sx in (-1, 1):
      for sz in (-1, 1):
        parts.append(box([sx * (w / 2 - r), leg_h / 2, sz * (d / 2 - r)], [r, leg_h / 2, r]))
    for sz in (-1, 1):  # a brace between front or back legs, at a random height
      if rng.random() < 0.4:
        parts.append(box([0, leg_h * rng.uniform(0.2, 0.6), sz * (d / 2 - r)], [w / 2, r, r]))
  sides = [[], [-1.0], [1.0], [-1.0, 1.0]][rng.choice(4, p=[0.2, 0.3, 0.3, 0.2])]
  for side in sides:
    parts += chair_side(rng, side, w, d, y0)
  return parts


def table(rng: np.random.Generator) -> list:
  """Top on a cabinet + legs (a desk), on four legs (maybe a shelf or drawer block), or on
  a column with a turned foot."""
  w, d = rng.uniform(0.9, 1.6), rng.uniform(0.5, 0.9)
  h, top_t = rng.uniform(0.5, 0.8), rng.uniform(0.03, 0.06)
  hb = h - top_t
  parts = [box([0, h - top_t / 2, 0], [w / 2, top_t / 2, d / 2])]
  style, side = rng.choice(['desk', 'legs', 'column'], p=[0.45, 0.35, 0.2]), random_sign(rng)
  wall = w / 32 * rng.uniform(1.1, 1.5)  # about a voxel
  if style == 'desk':
    return parts + desk(rng, w, d, hb, wall, side)
  if style == 'legs':
    return parts + legs_and_more(rng, w, d, hb, wall, side)
  parts.append(cyl([0, hb / 2, 0], [0, 1, 0], rng.uniform(0.04, 0.08), hb / 2))
  return parts + star_base(rng, 0.04, d * rng.uniform(0.4, 0.6), int(rng.integers(3, 5)))


def lamp(rng: np.random.Generator) -> list:
  """Base (disc or turned block), pole, 1-2 arms towards random directions, each with a
  shade open at its far end and tilted away from the pole."""
  base_t, pole_h, pole_r = rng.uniform(0.03, 0.06), rng.uniform(0.5, 1.0), rng.uniform(0.02, 0.03)
  if rng.random() < 0.5:
    parts = [cyl([0, base_t / 2, 0], [0, 1, 0], rng.uniform(0.12, 0.22), base_t / 2)]
  else:
    a, b = rng.uniform(0.1, 0.2, 2)
    parts = [obox([0, base_t / 2, 0], [a, base_t / 2, b], rot_y(rng.uniform(0, np.pi)))]
  parts.append(cyl([0, base_t + pole_h / 2, 0], [0, 1, 0], pole_r, pole_h / 2))
  top, yaw = np.array([0.0, base_t + pole_h, 0.0]), rng.uniform(0, 2 * np.pi)
  for k in range(int(rng.integers(1, 3))):
    yaw_k = yaw + k * rng.uniform(0.6, 1.4) * np.pi  # a second arm elsewhere
    elev, length = np.radians(rng.uniform(-10, 50)), rng.uniform(0.25, 0.5)
    out = rot_y(yaw_k)[:, 0]  # horizontal unit vector
    a = np.cos(elev) * out + [0, np.sin(elev), 0]
    end = top + a * length
    tilt = np.radians(rng.uniform(35, 100))  # from straight down, away from the pole
    parts += [cyl(top + a * length / 2, a, pole_r, length / 2), ell(end, [pole_r * 1.8] * 3)]
    parts += shade(rng, end, np.sin(tilt) * out - [0, np.cos(tilt), 0])
  return parts


def car(rng: np.random.Generator) -> list:
  """Body, cabin at one end or mid, 4 or 6 wheels, a pickup bed or not, one-ended extras."""
  length, width = rng.uniform(0.9, 1.4), rng.uniform(0.38, 0.52)
  body_h, wheel_r = rng.uniform(0.15, 0.25), rng.uniform(0.08, 0.13)
  clearance = wheel_r * rng.uniform(0.6, 0.9)
  body_top = clearance + body_h
  parts = [box([0, clearance + body_h / 2, 0], [length / 2, body_h / 2, width / 2])]
  pickup, end = rng.random() < 0.35, random_sign(rng)
  cab_l, cab_h = length * rng.uniform(0.3, 0.5), rng.uniform(0.12, 0.22)
  cab_x = end * (length - cab_l) / 2 * (rng.uniform(0.5, 1.0) if pickup else rng.uniform(0, 0.5))
  round_cab = rng.random() < 0.4
  if round_cab:
    parts.append(ell([cab_x, body_top, 0], [cab_l / 2, cab_h, width / 2 * 0.9]))
  else:
    parts.append(box([cab_x, body_top + cab_h / 2, 0], [cab_l / 2, cab_h / 2, width / 2 * 0.9]))
  if pickup:
    edge = cab_x - end * cab_l / 2
    x0, x1 = sorted([edge, -end * length / 2])
    parts += pickup_bed(rng, x0, x1, body_top, width, length / 32 * 1.3)
  wheel_x = length / 2 - wheel_r * rng.uniform(1.2, 1.8)
  axles = [-wheel_x, wheel_x] + ([-wheel_x + 2.2 * wheel_r] if rng.random() < 0.2 else [])
  for x in axles:
    for sz in (-1, 1):
      parts.append(
        cyl([x, wheel_r, sz * (width / 2 - 0.02)], [0, 0, 1], wheel_r, rng.uniform(0.03, 0.05))
      )
  parts += car_ends(rng, length, width, body_top, (cab_x, cab_l, cab_h), round_cab)
  return parts + car_sides(rng, length, width, body_top)


def aeroplane(rng: np.random.Generator) -> list:
  """Fuselage, swept wings, tail (fin or twin fins), unequal engines, maybe a pod under one
  wing and an antenna."""
  length, fus_r = rng.uniform(1.0, 1.5), rng.uniform(0.06, 0.11)
  span, chord = rng.uniform(0.9, 1.6), rng.uniform(0.12, 0.25)
  wing_x, wing_t = rng.uniform(-0.1, 0.15), rng.uniform(0.025, 0.04)
  wing_y, sweep = fus_r * rng.uniform(-0.5, 0.3), np.radians(rng.uniform(0, 35))
  root, half = fus_r * 0.5, span / 2 - fus_r * 0.5
  parts = [ell([0, 0, 0], [length / 2, fus_r, fus_r])]
  for side in (-1, 1):  # wing halves, turned back by the sweep
    parts.append(
      beam(
        [wing_x, wing_y, side * root],
        -side * (np.pi / 2 + sweep),
        half / np.cos(sweep),
        wing_t / 2,
        chord / 2,
      )
    )
    parts += engines(rng, side, wing_x, wing_y, sweep, root, half)
  parts += tail(rng, length, span, chord, fus_r, wing_t)
  if rng.random() < 0.6:  # a pod or tank under one wing
    s = root + half * rng.uniform(0.5, 0.9)
    pr = rng.uniform(0.04, 0.06)
    parts.append(
      ell(
        [wing_x - (s - root) * np.tan(sweep), wing_y - pr, random_sign(rng) * s],
        [rng.uniform(0.1, 0.2), pr, pr],
      )
    )
  if rng.random() < 0.6:
    ah = rng.uniform(0.06, 0.12) + fus_r * 0.4  # from inside the fuselage
    x, up = rng.uniform(-0.3, 0.3) * length, random_sign(rng)
    parts.append(box([x, up * (fus_r * 0.6 + ah / 2), 0], [0.025, ah / 2, 0.02]))
  return parts


CATEGORIES: dict[str, Callable[[np.random.Generator], list]] = {
  f.__name__: f for f in (chair, table, lamp, car, aeroplane)
}
