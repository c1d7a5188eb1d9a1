"""Config checks: every bad value fails early with the key that holds it.

Configs themselves live in configs/*.py (ml_collections, loaded with `config_flags`);
this module only validates them, so a typo or an impossible size is reported as
`config.model.encoder_widths[2] = -8: ...` before anything is built. The checks are
tables of (key, check, why) rows: CHECKS for each key on its own, then `_relations` for
the keys that constrain each other.
"""

from typing import Any, Callable

import ml_collections

from refine3d_jax import cli
from refine3d_jax.errors import UserError

FUSIONS = ('self_attention', 'attsets', 'mean')
SCHEDULES = ('jtso', 'attsets', 'end_to_end', 'jtso_joint')  # refine3d_jax/jtso.py
DATASETS = ('shapenet_r2n2', 'shapenet_vox', 'synthetic_shapes')  # data.build.DATASETS
PROTOCOLS = ('r2n2_127', 'pix2vox_224')  # refine3d_jax.data.transforms.PROTOCOLS
EVAL_VIEWS = ('first_n', 'random')
NUM_VIEWS = 24  # views per object in every dataset

# Keys added after workdirs were first made, with the value that reproduces what a config
# without them meant (with_added_keys fills them in a saved config).
ADDED_KEYS = {
  'model.conv2d': 'auto',  # lowering only: same parameters and outputs
  'model.conv3d': 'auto',
  'model.decoder_head': 'conv',
  'model.occupancy_prior': 0.0,
  # the model as it was before the paper preset followed the paper's text (issue 16)
  'model.attention_block': 'transformer',
  'model.decoder_shortcuts': 'identity',
  'model.refiner_up_activation': 'leaky_relu',
  'model.refiner_bottleneck': 0,
  'model.refiner_bn_momentum': 0.9,
  'eval.thresholds': (0.2, 0.25, 0.3, 0.4, 0.5),
  'eval.fscore_distance': 0.01,
  'eval.measure_cost': True,
  'train.steps_per_epoch': 0,
  'train.single_views': 1,
  'train.ema_decay': 0.0,
  'data.pca_noise': 0.0,
  'data.rgb_permute': False,
  'data.paired_views': False,
  'data.reader_nice': 0,
}


class ConfigError(UserError, ValueError):
  """A config value is missing or invalid; the message names the key."""


Check = tuple[Callable[[Any], bool], str]  # (value -> ok, why not)
Row = tuple[str, Callable[[Any], bool], str]  # (key, value -> ok, why not)


def _int(v: Any) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
  return isinstance(v, (int, float))


def _one_of(options: tuple[str, ...]) -> Check:
  return (lambda v: v in options), f'must be one of {options}'


def _int_in(lo: int, hi: int) -> Check:
  return (lambda v: _int(v) and lo <= v <= hi), f'must be an integer in [{lo}, {hi}]'


def _at_least(lo: int, note: str = '') -> Check:
  return (lambda v: isinstance(v, int) and v >= lo), f'must be >= {lo}{note}'


def _fraction(note: str = '') -> Check:
  return (lambda v: _number(v) and 0 <= v < 1), f'must be in [0, 1){note}'


POSITIVE_INT: Check = (lambda v: _int(v) and v > 0), 'must be a positive integer'
POSITIVE: Check = (lambda v: _number(v) and v > 0), 'must be positive'
BOOL: Check = (lambda v: isinstance(v, bool)), 'must be True or False'
THREE_NUMBERS: Check = (
  (
    lambda v: (
      isinstance(v, (tuple, list))
      and len(v) == 3
      and all(_number(x) and not isinstance(x, bool) for x in v)
    )
  ),
  'must be a tuple of 3 numbers',
)


def _positive_ints(key: str) -> list[Row]:
  """A non-empty tuple of positive integers: the tuple, then each element."""
  return [
    (
      key,
      lambda v: isinstance(v, (tuple, list)) and len(v) > 0,
      'must be a non-empty tuple of positive integers',
    ),
    (key + '[]', *POSITIVE_INT),
  ]


# Each key on its own, in order: (key, check, why); `key[]` checks every element of a tuple.
MODEL_CHECKS: list[Row] = [
  ('model.image_size', *POSITIVE_INT),
  *_positive_ints('model.encoder_widths'),
  ('model.encoder_first_kernel', *POSITIVE_INT),
  ('model.latent_dim', *POSITIVE_INT),
  ('model.fusion', *_one_of(FUSIONS)),
  ('model.num_heads', *POSITIVE_INT),
  ('model.attention_layers', *POSITIVE_INT),
  ('model.attention_mlp_dim', *POSITIVE_INT),
  *_positive_ints('model.decoder_widths'),
  ('model.decoder_base_size', *POSITIVE_INT),
  ('model.volume_size', *POSITIVE_INT),
  ('model.decoder_head', *_one_of(('conv', 'shuffle'))),  # models/decoder.py
  ('model.occupancy_prior', *_fraction(' (0 = off)')),
  *_positive_ints('model.refiner_widths'),
  ('model.refiner_kernel', *POSITIVE_INT),
  ('model.leaky_slope', *_fraction()),
  ('model.conv2d', *_one_of(('auto', 'matmul', 'native', 'mixed'))),  # models/conv2d.py
  ('model.conv3d', *_one_of(('auto', 'fold', 'native'))),  # models/conv3d.py
  ('model.attention_block', *_one_of(('transformer', 'plain'))),  # models/fusion.py
  ('model.decoder_shortcuts', *_one_of(('identity', 'conv'))),  # models/decoder.py
  ('model.refiner_up_activation', *_one_of(('leaky_relu', 'relu'))),  # models/refiner.py
  (
    'model.refiner_bottleneck',
    lambda v: isinstance(v, int) and v >= 0,
    'must be an integer >= 0 (0 = none)',
  ),
  ('model.refiner_bn_momentum', *_fraction()),
  ('model.dtype', *_one_of(('float32', 'bfloat16'))),
]
CHECKS: list[Row] = MODEL_CHECKS + [
  ('train.batch_size', *POSITIVE_INT),
  ('train.num_views', *POSITIVE_INT),
  ('train.learning_rate', *POSITIVE),
  ('train.num_epochs', *POSITIVE_INT),
  (
    'train.lr_decay_epochs[]',
    lambda v: _number(v) and v > 0,
    'must be a positive number of epochs',
  ),
  ('train.lr_decay_factor', lambda v: _number(v) and 0 < v <= 1, 'must be in (0, 1]'),
  *_positive_ints('eval.view_counts'),
  ('train.schedule', *_one_of(SCHEDULES)),
  ('train.k1_epochs', lambda v: _number(v) and v >= 0, 'must be >= 0 (epochs of stage 1)'),
  *[
    (f'train.lr_scale.{group}', lambda v: _number(v) and v >= 0, 'must be >= 0')
    for group in ('base', 'att', 'ref')
  ],
  ('train.adam_b1', *_fraction()),
  ('train.adam_b2', *_fraction()),
  ('train.adam_eps', *POSITIVE),
  ('train.ema_decay', *_fraction(' (0 = no moving average)')),
  ('train.num_steps', *_at_least(0, ' (0 = train.num_epochs)')),
  ('train.steps_per_epoch', *_at_least(0, ' (0 = one pass over the training split)')),
  ('train.log_every_steps', *POSITIVE_INT),
  ('train.checkpoint_every_steps', *POSITIVE_INT),
  ('train.keep_checkpoints', *POSITIVE_INT),
  ('eval.every_steps', *POSITIVE_INT),
  *_positive_ints('eval.val_views'),
  ('eval.threshold', lambda v: _number(v) and 0 < v < 1, 'must be in (0, 1)'),
  ('eval.max_examples', *_at_least(0, ' (0 = all)')),
  ('eval.num_images', *_at_least(1)),
  (
    'eval.thresholds',
    lambda v: (
      isinstance(v, (tuple, list)) and len(v) > 0 and all(_number(t) and 0 < t < 1 for t in v)
    ),
    'must be a non-empty tuple of numbers in (0, 1)',
  ),
  (
    'eval.fscore_distance',
    lambda v: _number(v) and 0 < v < 1,
    'must be in (0, 1) (a fraction of the volume side)',
  ),
  ('eval.measure_cost', *BOOL),
  ('data.dataset', *_one_of(DATASETS)),
  (
    'data.builder_config',
    lambda v: isinstance(v, str),
    "must be a string ('' = the builder's default)",
  ),
  ('data.data_dir', lambda v: isinstance(v, str) and v != '', 'must be a non-empty path'),
  ('data.data_dir', lambda v: not cli.is_url(v), f'is a URL; {cli.NO_NETWORK}'),
  ('data.protocol', *_one_of(PROTOCOLS)),
  (
    'data.train_background',
    lambda v: isinstance(v, (tuple, list)) and len(v) == 2,
    'must be (low, high)',
  ),
  ('data.train_background[0]', *_int_in(0, 255)),
  ('data.test_background', *_int_in(0, 255)),
  ('data.color_jitter', *_fraction()),
  ('data.pca_noise', lambda v: _number(v) and v >= 0, 'must be >= 0 (0 = off)'),
  ('data.rgb_permute', *BOOL),
  ('data.paired_views', *BOOL),
  ('data.mean', *THREE_NUMBERS),
  ('data.std', *THREE_NUMBERS),
  ('data.std', lambda v: all(s > 0 for s in v), 'must be positive'),
  ('train.num_views', *_int_in(1, NUM_VIEWS)),
  ('train.single_views', *_int_in(1, NUM_VIEWS)),
  ('eval.view_counts[]', *_int_in(1, NUM_VIEWS)),
  ('data.eval_views', *_one_of(EVAL_VIEWS)),
  ('data.eval_seed', *_int_in(0, 2**32 - 1)),
  ('seed', *_int_in(0, 2**32 - 1)),  # grain's shuffle seed
  ('data.num_workers', *_int_in(0, 1024)),
  ('data.num_threads', *POSITIVE_INT),
  ('data.prefetch', *POSITIVE_INT),
  ('data.reader_nice', *_int_in(0, 19)),
]


def _model_relations(m: ml_collections.ConfigDict) -> list[Row]:
  """The model checks that relate keys (built once MODEL_CHECKS pass)."""
  ratio = m.volume_size // m.decoder_base_size
  ups = ratio.bit_length() - 1 - (m.decoder_head == 'shuffle')  # 2x upsamplings
  return [
    (
      'model.encoder_shortcuts',
      lambda v: len(v) == len(m.encoder_widths),
      f'needs one bool per encoder block ({len(m.encoder_widths)})',
    ),
    (
      'model.num_heads',
      lambda v: m.latent_dim % v == 0,
      f'must divide model.latent_dim = {m.latent_dim}',
    ),
    (
      'model.decoder_base_size',
      lambda v: m.volume_size % v == 0 and ratio & (ratio - 1) == 0,
      'model.volume_size / model.decoder_base_size must be a power of 2',
    ),
    (
      'model.decoder_head',
      lambda v: ups >= 0,
      'shuffle needs model.volume_size >= 2 * model.decoder_base_size',
    ),
    (
      'model.decoder_widths',
      lambda v: len(v) - 1 >= ups,
      f'needs at least {ups + 1} widths (stem + one block per 2x upsampling to {m.volume_size}^3)',
    ),
    (
      'model.refiner_widths',
      lambda v: m.volume_size % 2 ** len(v) == 0,
      f'{len(m.refiner_widths)} poolings do not divide model.volume_size = {m.volume_size}',
    ),
  ]


def _relations(c: ml_collections.ConfigDict) -> list[Row]:
  """The other checks that relate keys (built once CHECKS pass)."""
  return _model_relations(c.model) + [
    (
      'train.k2_epochs',
      lambda v: _number(v) and v >= c.train.k1_epochs,
      f'must be >= train.k1_epochs = {c.train.k1_epochs}',
    ),
    ('data.train_background[1]', *_int_in(c.data.train_background[0], 255)),
    ('data.min_views', *_int_in(0, c.train.num_views)),
    (
      'data.paired_views',
      lambda v: not v or not c.data.min_views or c.train.batch_size % 2 == 0,
      f'needs an even train.batch_size (pairs of objects) when data.min_views > 0; '
      f'got {c.train.batch_size}',
    ),
  ]


def _values(config: Any, key: str) -> list[tuple[str, Any]]:
  """(name, value) of `key`: 'a.b', 'a.b[1]', or 'a.b[]' for every element of a.b."""
  path, _, index = key.partition('[')
  value = config
  for part in path.split('.'):
    value = value[part]
  if index == ']':
    return [(f'{path}[{i}]', v) for i, v in enumerate(value)]
  return [(key, value[int(index[:-1])] if index else value)]


def _check(config: Any, rows: list[Row]) -> None:
  for key, check, why in rows:
    for name, value in _values(config, key):
      if not check(value):
        raise ConfigError(f'config.{name} = {value!r}: {why}')


def validate_model(model: ml_collections.ConfigDict) -> None:
  """Checks `config.model`; raises ConfigError naming the first bad key."""
  _check({'model': model}, MODEL_CHECKS)
  _check({'model': model}, _model_relations(model))


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks a whole experiment config; raises ConfigError naming the first bad key."""
  _check(config, CHECKS)
  _check(config, _relations(config))


def with_added_keys(
  config: ml_collections.ConfigDict,
) -> tuple[ml_collections.ConfigDict, list[str]]:
  """A saved config (e.g. checkpoint.restore_config) completed with ADDED_KEYS it lacks;
  returns (config, the keys filled in)."""
  config = ml_collections.ConfigDict(config.to_dict())
  filled = []
  for dotted, value in ADDED_KEYS.items():
    *parents, leaf = dotted.split('.')
    node = config
    for p in parents:
      node = node[p]
    if leaf not in node:
      node[leaf] = value
      filled.append(dotted)
  return config, filled


# Model keys that may change between a checkpoint and the run restoring it: how the same
# parameters are computed, not what they are.
RESTORE_MAY_CHANGE = ('model.conv2d', 'model.conv3d', 'model.dtype')


def model_differences(
  saved: ml_collections.ConfigDict, current: ml_collections.ConfigDict
) -> list[str]:
  """'model.key: saved X, now Y' for every model key whose value differs (keys added
  since the save count with their ADDED_KEYS value; RESTORE_MAY_CHANGE ones are
  ignored)."""
  saved, _ = with_added_keys(saved)
  norm = lambda v: list(v) if isinstance(v, (tuple, list)) else v
  out = []
  for key in sorted(set(saved.model.keys()) | set(current.model.keys())):
    if f'model.{key}' in RESTORE_MAY_CHANGE:
      continue
    a, b = saved.model.get(key), current.model.get(key)
    if norm(a) != norm(b):
      out.append(f'model.{key}: saved {a!r}, now {b!r}')
  return out
