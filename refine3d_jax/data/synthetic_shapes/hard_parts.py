"""The parts of the 'hard' categories (`hard_shapes`): the sub-assemblies they are built of.

Beams and turned star bases; chair backs and arms; a desk's cabinet and drawer block, table
legs and shelves; lamp shades; a car's one-ended extras and pickup bed; an aeroplane's
engines and tail; a random side. Those given a generator draw from it in a fixed order (part
of the dataset: moving a draw changes the objects), and all but `random_sign` return (kind,
params [K]) primitives (`beam` one, the others a list) in the canonical frame and
unnormalised units of `shapes`.
"""

import numpy as np

from refine3d_jax.data.synthetic_shapes.shapes import box, cyl, ell, obox, rot_y, tube


def random_sign(rng: np.random.Generator) -> float:
  """-1.0 or +1.0, equally likely: which side or end a one-sided part goes to."""
  return float(rng.choice([-1.0, 1.0]))


def beam(start, yaw: float, length: float, half_h: float, half_w: float):
  """Oriented box from start [3] along the horizontal direction at `yaw` radians.

  yaw 0 points along +x, pi/2 along -z (as `shapes.rot_y` turns +x).
  """
  rot = rot_y(yaw)
  return obox(np.asarray(start, float) + rot[:, 0] * length / 2, [length / 2, half_h, half_w], rot)


def star_base(rng, y, reach, arms):
  """A pedestal's foot: `arms` spokes at y, turned by a random angle, with round feet."""
  turn, t = rng.uniform(0, 2 * np.pi), rng.uniform(0.025, 0.04)
  parts = []
  for k in range(arms):
    yaw = turn + 2 * np.pi * k / arms
    parts.append(beam([0, y, 0], yaw, reach, t, t))
    end = rot_y(yaw)[:, 0] * reach
    parts.append(ell([end[0], y - t, end[2]], [1.3 * t, 1.3 * t, 1.3 * t]))
  return parts


def frame_back(rng, w, z, y0, h, t):
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


def chair_side(rng, side, w, d, y0):
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


def desk(rng, w, d, hb, wall, side):
  """Under a w x d top at height hb: a cabinet at the x end `side`, legs or a solid drawer
  block at the other; each flush with a random z edge."""
  cw, cd = w * rng.uniform(0.3, 0.45), d * rng.uniform(0.6, 1.0)
  parts = _cabinet(rng, side * (w - cw) / 2, random_sign(rng) * (d - cd) / 2, cw, cd, hb, wall)
  if rng.random() < 0.3:
    return parts + [
      box([-side * (w - cw) / 2, hb / 2, random_sign(rng) * (d - cd) / 2], [cw / 2, hb / 2, cd / 2])
    ]
  return parts + _table_legs(rng, w, d, hb, [-side])[0]


def legs_and_more(rng, w, d, hb, wall, side):
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
        [side * (w / 2 - dw / 2 - 0.1), hb - dh / 2, random_sign(rng) * (d - dd) / 2],
        [dw / 2, dh / 2, dd / 2],
      )
    )
  return parts


def shade(rng, at, direction):
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


def car_ends(rng, length, width, body_top, cab, round_cab):
  """Things at one end of a car: a roof box, a spoiler, a spare wheel.

  cab: the cabin's (centre x, length, height) on the body's top; round_cab: an ellipsoid.
  """
  (cab_x, cab_l, cab_h), parts, end = cab, [], random_sign(rng)
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


def car_sides(rng, length, width, body_top):
  """Things on one side of a car: a tank or box along it, an antenna."""
  parts = []
  if rng.random() < 0.5:  # a tank or box along one side
    r, tl = rng.uniform(0.04, 0.07), length * rng.uniform(0.2, 0.4)
    x, z = rng.uniform(-0.25, 0.25) * length, random_sign(rng) * (width / 2 + r * 0.6)
    c = [x, body_top - r * 1.2, z]
    parts.append(cyl(c, [1, 0, 0], r, tl / 2) if rng.random() < 0.5 else box(c, [tl / 2, r, r]))
  if rng.random() < 0.4:
    ah = rng.uniform(0.12, 0.25)
    x, z = rng.uniform(-0.4, 0.4) * length, random_sign(rng) * width * 0.4
    parts.append(cyl([x, body_top + ah / 2, z], [0, 1, 0], 0.02, ah / 2))
  return parts


def pickup_bed(rng, x0, x1, y, width, wall):
  """An open-top bed on the body between x0 < x1 at height y: floor-less walls."""
  bh = rng.uniform(0.07, 0.12)
  xc, half = (x0 + x1) / 2, (x1 - x0) / 2
  return [
    box([xc, y + bh / 2, sz * (width / 2 - wall / 2)], [half, bh / 2, wall / 2]) for sz in (-1, 1)
  ] + [
    box([x, y + bh / 2, 0], [wall / 2, bh / 2, width / 2]) for x in (x0 + wall / 2, x1 - wall / 2)
  ]


def engines(rng, side, wing_x, wing_y, sweep, root, half_span):
  """0-2 engines hung under one wing (z side `side`), sizes drawn per engine."""
  parts = []
  for k in range(int(rng.integers(0, 3))):
    s = root + half_span * rng.uniform(0.2, 0.45) * (k + 1)
    r, ln = rng.uniform(0.035, 0.065), rng.uniform(0.07, 0.13)
    x = wing_x - (s - root) * np.tan(sweep)
    parts.append(cyl([x + ln * 0.4, wing_y - r * 0.9, side * s], [1, 0, 0], r, ln))
  return parts


def tail(rng, length, span, chord, fus_r, wing_t):
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
