"""The 'hard' categories: objects one view leaves ambiguous.

Same five categories, canonical frame and primitives as `shapes` (y up, long along x), but
with what a single view cannot settle: parts on one side only (one arm rest, a tablet arm,
a drawer block, a lamp arm towards any direction, a roof box or spoiler at one end, unequal
engines, a pod under one wing), openings seen from some angles only (a desk's cabinet open
on one random side, a chair's open-frame back, a lamp shade open at one end, a pickup's
bed), sub-assemblies turned about the vertical axis (star bases, crossed feet, lamp bases)
and random part counts. Every function maps a generator to a list of (kind, params [K])
primitives in unnormalised units (see `shapes`); each part touches the rest.
"""

from typing import Callable

import numpy as np

from refine3d_jax.data.synthetic_shapes.shapes import box, cyl, ell, obox, rot_y, tube


def _sign(rng: np.random.Generator) -> float:
  return float(rng.choice([-1.0, 1.0]))


def beam(start, yaw: float, length: float, half_h: float, half_w: float):
  """Oriented box from start [3] along the horizontal direction at `yaw` radians.

  yaw 0 points along +x, pi/2 along -z (as `shapes.rot_y` turns +x).
  """
  rot = rot_y(yaw)
  return obox(np.asarray(start, float) + rot[:, 0] * length / 2, [length / 2, half_h, half_w], rot)


def _star_base(rng, y, reach, arms):
  """A pedestal's foot: `arms` spokes at y, turned by a random angle, with round feet."""
  turn, t = rng.uniform(0, 2 * np.pi), rng.uniform(0.025, 0.04)
  parts = []
  for k in range(arms):
    yaw = turn + 2 * np.pi * k / arms
    parts.append(beam([0, y, 0], yaw, reach, t, t))
    end = rot_y(yaw)[:, 0] * reach
    parts.append(ell([end[0], y - t, end[2]], [1.3 * t, 1.3 * t, 1.3 * t]))
  return parts


def _frame_back(rng, w, z, y0, h, t):
  """An open chair back: two posts, a top rail and 0-3 vertical slats between them."""
  post = rng.uniform(0.03, 0.05)
  parts = [box([sx * (w / 2 - post), y0 + h / 2, z], [post, h / 2, t / 2]) for sx in (-1, 1)]
  rail = rng.uniform(0.05, 0.12)
  parts.append(box([0, y0 + h - rail / 2, z], [w / 2, rail / 2, t / 2]))
  slats = int(rng.integers(0, 4))
  for k in range(slats):
    x = (w / 2 - post) * (2 * (k + 1) / (slats + 1) - 1)
    parts.append(box([x, y0 + (h - rail) / 2, z], [0.02, (h - rail) / 2, t / 2 * 0.7]))
  return parts


def _chair_side(rng, side, w, d, y0):
  """An arm on one side (x = side * w / 2) of a seat whose top is at y0: rest or panel."""
  arm_h, x = rng.uniform(0.15, 0.25), side * (w / 2 - 0.03)
  kind = rng.choice(['rest', 'panel', 'tablet'])
  if kind == 'panel':
    return [box([x, y0 + arm_h / 2, 0], [0.03, arm_h / 2, d / 2])]
  parts = [box([x, y0 + arm_h / 2, d / 2 - 0.03], [0.025, arm_h / 2, 0.025])]
  if kind == 'rest':
    return parts + [box([x, y0 + arm_h, 0], [0.03, 0.02, d / 2])]
  tw, tl = rng.uniform(0.18, 0.3), rng.uniform(0.25, 0.4)  # a writing tablet, reaching in
  return parts + [
    box([x - side * (tw / 2 - 0.03), y0 + arm_h, d / 2 - tl / 2 + 0.08], [tw / 2, 0.015, tl / 2])
  ]


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
    parts += _frame_back(rng, w, zb, y0, back_h, back_t)
  if rng.random() < 0.35:
    parts.append(cyl([0, leg_h / 2, 0], [0, 1, 0], rng.uniform(0.03, 0.05), leg_h / 2))
    parts += _star_base(rng, 0.04, max(w, d) * rng.uniform(0.45, 0.65), int(rng.integers(3, 6)))
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
    parts += _chair_side(rng, side, w, d, y0)
  return parts


def _cabinet(rng, x, z, cw, cd, h, wall):
  """A box of walls and a floor under a top at height h, open on one random vertical side.

  Centred at (x, ., z), cw wide (x) and cd deep (z); maybe with a shelf inside.
  """
  open_side = rng.integers(4)  # -x, +x, -z, +z
  parts = [box([x, wall / 2, z], [cw / 2, wall / 2, cd / 2])]
  for k, (sx, sz) in enumerate([(-1, 0), (1, 0), (0, -1), (0, 1)]):
    if k == open_side:
      continue
    c = [x + sx * (cw / 2 - wall / 2), h / 2, z + sz * (cd / 2 - wall / 2)]
    parts.append(box(c, [wall / 2 if sx else cw / 2, h / 2, wall / 2 if sz else cd / 2]))
  if rng.random() < 0.5:
    parts.append(box([x, h * rng.uniform(0.35, 0.65), z], [cw / 2, wall / 2, cd / 2]))
  return parts


def _table_legs(rng, w, d, h, xs):
  """(parts, inset of the leg centres from the top's edges): square legs under a top of
  w x d at the x-sides in xs, reaching height h."""
  leg, inset = rng.uniform(0.03, 0.05), rng.uniform(0.0, 0.08)
  return [
    box([sx * (w / 2 - leg - inset), h / 2, sz * (d / 2 - leg - inset)], [leg, h / 2, leg])
    for sx in xs
    for sz in (-1, 1)
  ], leg + inset


def _desk(rng, w, d, hb, wall, side):
  """Under a w x d top at height hb: a cabinet at the x end `side`, legs or a solid drawer
  block at the other; each flush with a random z edge."""
  cw, cd = w * rng.uniform(0.3, 0.45), d * rng.uniform(0.6, 1.0)
  parts = _cabinet(rng, side * (w - cw) / 2, _sign(rng) * (d - cd) / 2, cw, cd, hb, wall)
  if rng.random() < 0.3:
    return parts + [
      box([-side * (w - cw) / 2, hb / 2, _sign(rng) * (d - cd) / 2], [cw / 2, hb / 2, cd / 2])
    ]
  return parts + _table_legs(rng, w, d, hb, [-side])[0]


def _legs_and_more(rng, w, d, hb, wall, side):
  """Four legs under a w x d top at height hb, maybe a shelf between them and a drawer
  block hung from the top towards the x end `side` and a random z edge."""
  parts, inner = _table_legs(rng, w, d, hb, [-1, 1])
  if rng.random() < 0.5:
    parts.append(box([0, hb * rng.uniform(0.15, 0.4), 0], [w / 2 - inner, wall / 2, d / 2 - inner]))
  if rng.random() < 0.6:
    dw, dh = w * rng.uniform(0.2, 0.35), hb * rng.uniform(0.15, 0.3)
    dd = d * rng.uniform(0.4, 0.8)
    parts.append(
      box(
        [side * (w / 2 - dw / 2 - 0.1), hb - dh / 2, _sign(rng) * (d - dd) / 2],
        [dw / 2, dh / 2, dd / 2],
      )
    )
  return parts


def table(rng: np.random.Generator) -> list:
  """Top on a cabinet + legs (a desk), on four legs (maybe a shelf or drawer block), or on
  a column with a turned foot."""
  w, d = rng.uniform(0.9, 1.6), rng.uniform(0.5, 0.9)
  h, top_t = rng.uniform(0.5, 0.8), rng.uniform(0.03, 0.06)
  hb = h - top_t
  parts = [box([0, h - top_t / 2, 0], [w / 2, top_t / 2, d / 2])]
  style, side = rng.choice(['desk', 'legs', 'column'], p=[0.45, 0.35, 0.2]), _sign(rng)
  wall = w / 32 * rng.uniform(1.1, 1.5)  # about a voxel
  if style == 'desk':
    return parts + _desk(rng, w, d, hb, wall, side)
  if style == 'legs':
    return parts + _legs_and_more(rng, w, d, hb, wall, side)
  parts.append(cyl([0, hb / 2, 0], [0, 1, 0], rng.uniform(0.04, 0.08), hb / 2))
  return parts + _star_base(rng, 0.04, d * rng.uniform(0.4, 0.6), int(rng.integers(3, 5)))


def _shade(rng, at, direction):
  """A lamp shade hung from at [3]: a tube along unit `direction`, closed by a disc at `at`
  and open at its far end; a bulb inside."""
  r, length = rng.uniform(0.1, 0.18), rng.uniform(0.15, 0.3)
  wall, cap = rng.uniform(0.035, 0.05), 0.04
  at, direction = np.asarray(at, float), np.asarray(direction, float)
  return [
    cyl(at + direction * cap / 2, direction, r, cap / 2),
    tube(at + direction * (cap + length / 2), direction, r, r - wall, length / 2),
    ell(at + direction * (cap + r * 0.35), [r * 0.4] * 3),
  ]


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
    parts += _shade(rng, end, np.sin(tilt) * out - [0, np.cos(tilt), 0])
  return parts


def _car_ends(rng, length, width, body_top, cab, round_cab):
  """Things at one end of a car: a roof box, a spoiler, a spare wheel.

  cab: the cabin's (centre x, length, height) on the body's top; round_cab: an ellipsoid.
  """
  (cab_x, cab_l, cab_h), parts, end = cab, [], _sign(rng)
  if rng.random() < 0.45:  # a roof box towards one end, resting on the roof
    bl, bh = cab_l * rng.uniform(0.4, 0.8), rng.uniform(0.04, 0.08)
    bx = cab_x + end * (cab_l - bl) / 2 * rng.uniform(0.3, 1.0)
    dx = max(abs(bx - cab_x) - bl / 2, 0.0) / (cab_l / 2)
    roof_y = body_top + cab_h * (np.sqrt(1 - dx**2) if round_cab else 1.0) - 0.01
    parts.append(box([bx, roof_y + bh / 2, 0], [bl / 2, bh / 2, width * rng.uniform(0.25, 0.4)]))
  if rng.random() < 0.45:
    x, post_h = -end * (length / 2 - 0.06), rng.uniform(0.05, 0.1)
    for sz in (-1, 1):
      parts.append(box([x, body_top + post_h / 2, sz * width * 0.3], [0.02, post_h / 2, 0.02]))
    parts.append(box([x, body_top + post_h, 0], [0.07, 0.015, width / 2]))
  if rng.random() < 0.35:
    r = rng.uniform(0.08, 0.12)
    parts.append(cyl([end * (length / 2 + 0.02), body_top - r * 0.9, 0], [1, 0, 0], r, 0.03))
  return parts


def _car_sides(rng, length, width, body_top):
  """Things on one side of a car: a tank or box along it, an antenna."""
  parts = []
  if rng.random() < 0.5:  # a tank or box along one side
    r, tl = rng.uniform(0.04, 0.07), length * rng.uniform(0.2, 0.4)
    x, z = rng.uniform(-0.25, 0.25) * length, _sign(rng) * (width / 2 + r * 0.6)
    c = [x, body_top - r * 1.2, z]
    parts.append(cyl(c, [1, 0, 0], r, tl / 2) if rng.random() < 0.5 else box(c, [tl / 2, r, r]))
  if rng.random() < 0.4:
    ah = rng.uniform(0.12, 0.25)
    x, z = rng.uniform(-0.4, 0.4) * length, _sign(rng) * width * 0.4
    parts.append(cyl([x, body_top + ah / 2, z], [0, 1, 0], 0.02, ah / 2))
  return parts


def _pickup_bed(rng, x0, x1, y, width, wall):
  """An open-top bed on the body between x0 < x1 at height y: floor-less walls."""
  bh = rng.uniform(0.07, 0.12)
  xc, half = (x0 + x1) / 2, (x1 - x0) / 2
  return [
    box([xc, y + bh / 2, sz * (width / 2 - wall / 2)], [half, bh / 2, wall / 2]) for sz in (-1, 1)
  ] + [
    box([x, y + bh / 2, 0], [wall / 2, bh / 2, width / 2]) for x in (x0 + wall / 2, x1 - wall / 2)
  ]


def car(rng: np.random.Generator) -> list:
  """Body, cabin at one end or mid, 4 or 6 wheels, a pickup bed or not, one-ended extras."""
  length, width = rng.uniform(0.9, 1.4), rng.uniform(0.38, 0.52)
  body_h, wheel_r = rng.uniform(0.15, 0.25), rng.uniform(0.08, 0.13)
  clearance = wheel_r * rng.uniform(0.6, 0.9)
  body_top = clearance + body_h
  parts = [box([0, clearance + body_h / 2, 0], [length / 2, body_h / 2, width / 2])]
  pickup, end = rng.random() < 0.35, _sign(rng)
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
    parts += _pickup_bed(rng, x0, x1, body_top, width, length / 32 * 1.3)
  wheel_x = length / 2 - wheel_r * rng.uniform(1.2, 1.8)
  axles = [-wheel_x, wheel_x] + ([-wheel_x + 2.2 * wheel_r] if rng.random() < 0.2 else [])
  for x in axles:
    for sz in (-1, 1):
      parts.append(
        cyl([x, wheel_r, sz * (width / 2 - 0.02)], [0, 0, 1], wheel_r, rng.uniform(0.03, 0.05))
      )
  parts += _car_ends(rng, length, width, body_top, (cab_x, cab_l, cab_h), round_cab)
  return parts + _car_sides(rng, length, width, body_top)


def _engines(rng, side, wing_x, wing_y, sweep, root, half_span):
  """0-2 engines hung under one wing (z side `side`), sizes drawn per engine."""
  parts = []
  for k in range(int(rng.integers(0, 3))):
    s = root + half_span * rng.uniform(0.2, 0.45) * (k + 1)
    r, ln = rng.uniform(0.035, 0.065), rng.uniform(0.07, 0.13)
    x = wing_x - (s - root) * np.tan(sweep)
    parts.append(cyl([x + ln * 0.4, wing_y - r * 0.9, side * s], [1, 0, 0], r, ln))
  return parts


def _tail(rng, length, span, chord, fus_r, wing_t):
  """A tail plane with a central fin under or over it (a T-tail), or twin fins at its tips."""
  tail_x, tail_span = -length / 2 + chord * 0.4, span * rng.uniform(0.25, 0.4)
  fin_h = rng.uniform(0.12, 0.25)
  t_tail = rng.random() < 0.3
  parts = [
    box([tail_x, fin_h + fus_r * 0.5 if t_tail else 0, 0], [chord * 0.3, wing_t / 2, tail_span / 2])
  ]
  fin_zs = [0.0] if t_tail or rng.random() < 0.7 else [-tail_span / 2, tail_span / 2]
  for z in fin_zs:  # a central fin rises from inside the fuselage, twin ones from the tail
    parts.append(
      box(
        [tail_x, fin_h / 2 + fus_r * 0.5 * (z == 0), z],
        [chord * 0.35, fin_h / 2 + (wing_t if z else fus_r * 0.3), wing_t / 2],
      )
    )
  return parts


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
    parts += _engines(rng, side, wing_x, wing_y, sweep, root, half)
  parts += _tail(rng, length, span, chord, fus_r, wing_t)
  if rng.random() < 0.6:  # a pod or tank under one wing
    s = root + half * rng.uniform(0.5, 0.9)
    pr = rng.uniform(0.04, 0.06)
    parts.append(
      ell(
        [wing_x - (s - root) * np.tan(sweep), wing_y - pr, _sign(rng) * s],
        [rng.uniform(0.1, 0.2), pr, pr],
      )
    )
  if rng.random() < 0.6:
    ah = rng.uniform(0.06, 0.12) + fus_r * 0.4  # from inside the fuselage
    x, up = rng.uniform(-0.3, 0.3) * length, _sign(rng)
    parts.append(box([x, up * (fus_r * 0.6 + ah / 2), 0], [0.025, ah / 2, 0.02]))
  return parts


CATEGORIES: dict[str, Callable[[np.random.Generator], list]] = {
  'chair': chair,
  'table': table,
  'lamp': lamp,
  'car': car,
  'aeroplane': aeroplane,
}
