r"""Entry point: `python main.py --config=configs/jtso.py[:paper] [--workdir=DIR]`.

Until the training driver lands (issue #4), this builds the configured model, runs one
forward pass on a random batch to show it works, and prints the model summary.
"""

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from refine3d_jax import configlib, summary
from refine3d_jax.models import create_model, init_variables

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/jtso.py', 'Experiment config.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and logs.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  try:
    configlib.validate(config)
  except configlib.ConfigError as e:
    raise app.UsageError(str(e)) from None
  logging.info('JAX devices: %s (process %d of %d)', jax.devices(), jax.process_index(),
               jax.process_count())
  model = create_model(config.model)
  variables = init_variables(model, jax.random.key(config.seed))
  s = config.model.image_size
  images = jax.random.normal(jax.random.key(1), (1, config.train.num_views, s, s, 3))
  out = jax.jit(model.apply)(variables, images)
  print(summary.format_table(summary.summarize(config)))
  print(f"\nForward pass on random {tuple(images.shape)} views: refined occupancy in "
        f"[{float(out['refined'].min()):.3f}, {float(out['refined'].max()):.3f}], "
        f"shape {tuple(out['refined'].shape)}.")
  print('Training is not implemented yet (issue #4): this run only built the model.')


if __name__ == '__main__':
  app.run(main)
