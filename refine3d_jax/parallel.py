"""Data parallelism with `jax.jit` and NamedSharding, on one host or many.

  parallel.initialize()                   # first, before any other JAX call (multi-host)
  mesh = parallel.make_mesh()             # 1-D, axis 'data', every device of every host
  state = parallel.replicate(state, mesh)
  step = jax.jit(train_step, in_shardings=(parallel.replicated(mesh),
                                           parallel.batch_sharded(mesh)),
                 out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
                 donate_argnums=0)
  for batch in it:                        # per-host numpy batches (input_pipeline)
    state, metrics = step(state, parallel.shard_batch(batch, mesh))
  parallel.to_host(metrics)               # numpy, the same on every host

Each host feeds its own shard of the data (input_pipeline.shard(): process_index /
process_count); shard_batch assembles the per-host batches into one global array whose
leading axis is split over all devices, in process order.
"""

import os
import re
from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  return int(value) if value else None


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  bind_address: str | None = None,
  initialization_timeout: int = 300,
) -> bool:
  """Starts multi-process JAX (`jax.distributed.initialize`) when more than one process runs.

  Each argument left None is read from the environment: `JAX_COORDINATOR_ADDRESS`
  ('host:port' of process 0), `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` and
  `JAX_COORDINATOR_BIND_ADDRESS` (what process 0's coordinator listens on; JAX's default
  '[::]:port' means every interface, so pass e.g. '127.0.0.1:port' for processes on one
  machine). With one process (num_processes unset or 1) this does nothing. Clusters that
  JAX detects by itself (Cloud TPU, Slurm, Open MPI) can call
  `jax.distributed.initialize()` directly instead. Must run before any other JAX call.

  Returns:
    True when the distributed runtime is up (now or from an earlier call), else False.
  """
  if jax.distributed.is_initialized():
    return True
  coordinator_address = coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS')
  if num_processes is None:
    num_processes = _env_int('JAX_NUM_PROCESSES')
  if process_id is None:
    process_id = _env_int('JAX_PROCESS_ID')
  bind_address = bind_address or os.environ.get('JAX_COORDINATOR_BIND_ADDRESS')
  if num_processes is None or num_processes == 1:
    return False
  if coordinator_address is None or process_id is None:
    raise ValueError(
      f'{num_processes} processes need a coordinator address and a process id '
      '(arguments, or JAX_COORDINATOR_ADDRESS and JAX_PROCESS_ID); got '
      f'coordinator_address={coordinator_address!r}, process_id={process_id!r}'
    )
  jax.distributed.initialize(
    coordinator_address=coordinator_address,
    num_processes=num_processes,
    process_id=process_id,
    coordinator_bind_address=bind_address,
    initialization_timeout=initialization_timeout,
  )
  return True


def usable_cores() -> int:
  """The cores this process may run on (a `taskset` pinning counts), not the machine's."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def cpu_devices(batch_size: int, cores: int | None = None) -> int:
  """The CPU device count `use_cpu_cores` picks: the most, up to `cores` (default: the
  cores this process may run on), that divide `batch_size`."""
  cores = cores or usable_cores()
  return max(d for d in range(1, cores + 1) if batch_size % d == 0)


def use_cpu_cores(
  batch_size: int,
  devices: int = 0,
  batch_name: str = 'config.train.batch_size',
  num_processes: int | None = None,
) -> int:
  """Makes the CPU `devices` JAX devices (0: `cpu_devices(batch_size)`, one per core), so
  that a CPU-only run is data-parallel over its cores like a multi-GPU one. XLA:CPU keeps
  2 cores busier with two half batches than with one whole (2-core AMD EPYC, quick preset,
  batch 16: stage 1 of the training loop 1.39x, BENCHMARKS.md 2026-12-01; the math is
  the same, tests/parallel_test.py; machines of more cores are not measured). Must run
  before any JAX computation. With devices = 0 it leaves the CPU alone (returns 0) in
  multi-process runs, where another setting (XLA_FLAGS'
  --xla_force_host_platform_device_count, jax_num_cpu_devices) chose already, or once JAX
  has started; an explicit count that cannot take effect is a ValueError. Otherwise
  returns the count it set. Accelerators are unaffected. `num_processes` (main.py's
  --num_processes) overrides the JAX_NUM_PROCESSES environment variable.
  """
  if devices < 0:
    raise ValueError(f'--cpu_devices must be >= 0 (0 = one per core), got {devices}')
  if devices and batch_size % devices:
    raise ValueError(f'--cpu_devices={devices} does not divide {batch_name} = {batch_size}')
  processes, source = num_processes, '--num_processes'
  if processes is None:
    processes, source = _env_int('JAX_NUM_PROCESSES'), 'JAX_NUM_PROCESSES'
  if (processes or 1) > 1:
    if devices:
      raise ValueError(f'--cpu_devices={devices} is for one process; {source}={processes}')
    return 0
  flag = re.search(r'--xla_force_host_platform_device_count=(\d+)', os.environ.get('XLA_FLAGS', ''))
  chosen = {
    'XLA_FLAGS --xla_force_host_platform_device_count': int(flag.group(1)) if flag else -1,
    'jax_num_cpu_devices': jax.config.jax_num_cpu_devices,
  }
  for name, count in chosen.items():
    if count != -1:
      if devices and devices != count:
        raise ValueError(f'--cpu_devices={devices} conflicts with {name}={count}; drop one')
      return 0
  count = devices or cpu_devices(batch_size)
  try:
    jax.config.update('jax_num_cpu_devices', count)
  except RuntimeError:  # JAX has started: its devices stay as they are
    if devices:
      raise ValueError(
        f'--cpu_devices={devices}: JAX has started already; call use_cpu_cores first'
      ) from None
    return 0
  return count


# XLA:CPU's switch for YNNPACK library fusions (empty: none).
YNN_OPTION = 'xla_cpu_experimental_ynn_fusion_type'


def single_device_options(backend: str | None = None) -> dict[str, str]:
  """`jax.jit(..., compiler_options=...)` for a program that runs on one device while the
  process may use more cores (inference latency, `predict`, `evaluate` on one device): on
  multi-core CPUs, turns off YNNPACK's fusions (their convolutions use one thread) so that
  XLA:CPU's Eigen ones run on its thread pool. Measured (2-core AMD EPYC Zen 5, paper
  preset, eval forward, ms per object, default / off, alternated, BENCHMARKS.md 2026-12-02
  "one-device programs"): 1 view batch 1 148 / 110, 3 views 195 / 162, 20 views
  667 / 594, 1 view batch 32 245 / 156. Training steps with one device per core (main.py's
  default) keep them (paper stages 0.74-0.82x, quick 0.77-1.02x without); paper training
  on one device of 2 cores ran 1.04-1.30x faster without, still slower than one device per
  core. {} on one core, on other backends, or where XLA_FLAGS sets the option."""
  if (backend or jax.default_backend()) != 'cpu' or usable_cores() < 2:
    return {}
  if YNN_OPTION in os.environ.get('XLA_FLAGS', ''):
    return {}
  return {YNN_OPTION: ''}


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process (`jax.devices()`), axis 'data'.

  Auto axis type (GSPMD propagation, as under jit with in/out shardings); jax.make_mesh's
  default in this JAX version is Explicit, which changes what jitted code may do."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimizer state, metrics)."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """The leading (batch) axis split over the 'data' axis; other axes whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def _replicate_leaf(x: Any, sharding: NamedSharding) -> jax.Array:
  if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    impl = jax.random.key_impl(x)
    return jax.random.wrap_key_data(_replicate_leaf(jax.random.key_data(x), sharding), impl=impl)
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  # Across hosts, device_put refuses committed arrays and checks numpy inputs for equality
  # with one collective per leaf; every host holds the same values, so build the global
  # array from each host's copy instead.
  if isinstance(x, jax.Array) and x.sharding == sharding:
    return x
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Puts every leaf of `tree` (numpy or jax arrays, typed PRNG keys) on every device of
  `mesh`, replicated. Multi-host: every host must pass the same values (as after the same
  seeded init or the same checkpoint restore); this is not checked."""
  sharding = replicated(mesh)
  return jax.tree.map(lambda x: _replicate_leaf(x, sharding), tree)


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Global arrays from this host's batch: every leaf `[B_host, ...]` becomes
  `[B_host * process_count, ...]`, its leading axis split over every device of `mesh`
  (process p's rows land on process p's devices).

  Raises ValueError when the leaves' leading sizes differ or B_host is not divisible by this
  host's device count."""
  leaves = jax.tree.leaves(batch)
  sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
  if len(sizes) != 1 or None in sizes:
    shapes = jax.tree.map(np.shape, batch)
    raise ValueError(f'every leaf of the batch needs the same leading (batch) size: {shapes}')
  (size,) = sizes
  local = mesh.local_mesh.size
  if size % local:
    raise ValueError(
      f'the per-host batch of {size} examples does not split over the {local} '
      f'local devices ({mesh.size} in all): make the global batch a multiple '
      f'of {mesh.size}'
    )
  sharding = batch_sharded(mesh)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
  )


def barrier(name: str) -> None:
  """Waits until every process reaches `barrier(name)` (no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def to_host(tree: Any) -> Any:
  """numpy copies of every leaf of `tree`, gathered whole on every host (sharded and
  multi-host arrays included; a collective, so every host must call it)."""

  def gather(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x))

  return jax.tree.map(gather, tree)
