r"""Trains Refine3DNet: `python main.py --config=configs/jtso.py[:paper] [--workdir=DIR]`.

An existing workdir resumes from its latest checkpoint. The embedded synthetic dataset is
built on first use (about 1.5 min on 2 cores); ShapeNet must be built first (README).
Multi-host: one process per host with --coordinator_address=HOST:PORT --num_processes=N
--process_id=I (or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID).
On one CPU-only host the batch is split over one JAX device per core (--cpu_devices=N to
choose, 1 for one device; parallel.use_cpu_cores). On Linux the command re-executes itself
once with glibc's malloc in transparent huge pages (`REFINE3D_HUGE_PAGES=0` to keep glibc's
defaults; `REFINE3D_KEEP_FREED_MEMORY=1` to also keep the memory it frees, for VMs that hand
freed memory back to their host; refine3d_jax/hostmem.py).
"""

if __name__ == '__main__':  # first: glibc reads its tunables when a process starts
  from refine3d_jax import hostmem

  hostmem.tune_malloc()

from absl import flags, logging
import jax
from ml_collections import config_flags

from refine3d_jax import cli, configlib, parallel, train
from refine3d_jax import workdir as workdir_lib
from refine3d_jax.data import build
from refine3d_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/jtso.py', 'Experiment config.')
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Checkpoints and logs (default: runs/<config>_<preset>).'
)
_FINE_TUNE = flags.DEFINE_bool(
  'fine_tune', False, "Resume another preset's, schedule's or dataset's checkpoint on purpose."
)
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'Multi-host: process 0 HOST:PORT.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Multi-host: number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Multi-host: this process (0-based).')
_CPU_DEVICES = flags.DEFINE_integer(
  'cpu_devices',
  0,
  'One host, CPU only: split the CPU into this many JAX devices, data-parallel '
  '(0: one per core, as many as divide the batch; 1: one device). parallel.use_cpu_cores.',
)


def main(argv):
  cli.no_arguments(argv)
  config = _CONFIG.value
  configlib.validate(config)
  try:
    parallel.use_cpu_cores(
      config.train.batch_size, _CPU_DEVICES.value, num_processes=_NUM_PROCESSES.value
    )
  except ValueError as e:
    raise UserError(str(e)) from None
  parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  config_file = config_flags.get_config_filename(flags.FLAGS['config'])
  workdir = _WORKDIR.value or workdir_lib.default_workdir(config_file, config.preset)
  cli.check_local(workdir, '--workdir')
  n, i = jax.process_count(), jax.process_index()
  logging.info('JAX devices: %s (process %d of %d); workdir %s', jax.devices(), i, n, workdir)
  if jax.process_index() == 0:  # one builder; the other hosts wait for it
    build.ensure_synthetic(config.data)
  parallel.barrier('synthetic data built')
  # A user's mistake (a UserError: no dataset, a busy workdir, a NaN loss...) or a signal
  # (Interrupted, after a save) ends here in one line (cli.run).
  train.train_and_evaluate(config, workdir, _FINE_TUNE.value)


if __name__ == '__main__':
  cli.run(main)
