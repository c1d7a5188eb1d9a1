r"""Trains Refine3DNet: `python main.py --config=configs/jtso.py[:paper] [--workdir=DIR]`.

Runs `train.train_and_evaluate(config, workdir)`; an existing workdir resumes from its
latest checkpoint. The embedded synthetic dataset is built on first use (about 1.5 min on
2 cores); ShapeNet must be built first (see README). Multi-host: start one process per
host with --coordinator_address=HOST:PORT --num_processes=N --process_id=I (or the
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment variables).
"""

import os
import sys

from absl import flags, logging
import jax
from ml_collections import config_flags

from refine3d_jax import cli, configlib, input_pipeline, parallel, stopping, train
from refine3d_jax import workdir as workdir_lib
from refine3d_jax.data import build

_CONFIG = config_flags.DEFINE_config_file(
  'config', 'configs/jtso.py', 'Experiment config.', lock_config=True
)
_WORKDIR = flags.DEFINE_string(
  'workdir',
  None,
  'Checkpoints and logs (default: runs/<config file>_<preset>, e.g. runs/jtso_quick).',
)
_FINE_TUNE = flags.DEFINE_bool(
  'fine_tune',
  False,
  "Resume the workdir's checkpoint even if its preset, schedule or dataset differ (on purpose).",
)
_COORDINATOR = flags.DEFINE_string(
  'coordinator_address', None, 'Multi-host: HOST:PORT of process 0.'
)
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Multi-host: number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Multi-host: this process (0-based).')


def ensure_synthetic_data(config) -> None:
  """Builds the synthetic dataset the config names if it is not built yet (no download)."""
  data = config.data
  path = input_pipeline.dataset_dir(data.dataset, data.builder_config, data.data_dir)
  if data.dataset == 'synthetic_shapes' and not os.path.exists(
    os.path.join(path, 'dataset_info.json')
  ):
    logging.info('Building %s into %s (first run only).', data.dataset, data.data_dir)
    build.build(data.dataset, os.path.expanduser(data.data_dir), data.builder_config or None)


def _quiet_orbax(record) -> bool:
  """Drops orbax's per-save INFO lines (dozens per checkpoint); keeps its warnings."""
  return record.levelno >= logging.WARNING or '/orbax/' not in record.pathname


def main(argv):
  cli.no_arguments(argv)
  logging.get_absl_handler().addFilter(_quiet_orbax)
  parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  config = _CONFIG.value
  configlib.validate(config)
  workdir = _WORKDIR.value or workdir_lib.default_workdir(
    config_flags.get_config_filename(flags.FLAGS['config']), config.preset
  )
  cli.check_local(workdir, '--workdir')
  logging.info(
    'JAX devices: %s (process %d of %d); workdir %s',
    jax.devices(),
    jax.process_index(),
    jax.process_count(),
    workdir,
  )
  if jax.process_index() == 0:  # one builder; the other hosts wait for it
    ensure_synthetic_data(config)
  parallel.barrier('synthetic data built')
  # A user's mistake is an errors.UserError, which cli.run prints as one line: an unbuilt
  # dataset, bad data, an unwritable or busy workdir, another run's checkpoint, a full disk
  # or a NaN loss (the last good checkpoint is kept).
  try:
    train.train_and_evaluate(config, workdir, _FINE_TUNE.value)
  except stopping.Interrupted as e:  # SIGTERM / SIGINT: a checkpoint was saved first
    print(f'{workdir}: {e}', file=sys.stderr)
    sys.exit(128 + e.signum)


if __name__ == '__main__':
  cli.run(main)
