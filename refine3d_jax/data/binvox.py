"""A small binvox reader and writer (our own; the widely copied binvox_rw is GPL).

binvox: a text header (`#binvox 1`, `dim D W H`, `translate x y z`, `scale s`, `data`) then
(value, run length) byte pairs expanding to D*W*H voxels in the file's x, z, y order. Every
peer transposes the file grid with (0, 2, 1); `read_binvox` returns that transposed grid and
`write_binvox` takes one, so `read_binvox(write_binvox(v))` gives back `v`.
"""

import os
from typing import Any, Sequence

import numpy as np

from refine3d_jax import report
from refine3d_jax.errors import DataError

_MAGIC = b'#binvox'
_AXES = (0, 2, 1)  # file order (x, z, y) <-> the peers' order; its own inverse.


def _parse_header(data: bytes, name: str) -> tuple[dict[str, Any], int]:
  """Parses the text header; returns (header, offset of the first run byte)."""
  if not data.startswith(_MAGIC):
    raise DataError(f'{name}: not a binvox file (bad magic {data[:12]!r}, expected {_MAGIC!r})')
  header: dict[str, Any] = {'translate': (0.0, 0.0, 0.0), 'scale': 1.0}
  offset = data.index(b'\n') + 1 if b'\n' in data else len(data)
  while True:
    end = data.find(b'\n', offset)
    if end < 0:
      raise DataError(f'{name}: truncated header (no `data` line)')
    line = data[offset:end].strip()
    offset = end + 1
    key, _, rest = line.partition(b' ')
    try:
      if key == b'data':
        break
      if key == b'dim':
        dims = tuple(int(x) for x in rest.split())
        if len(dims) != 3 or min(dims) <= 0:
          raise DataError(f'need 3 positive ints, got {rest.decode(errors="replace")!r}')
        header['dims'] = dims
      elif key == b'translate':
        header['translate'] = tuple(float(x) for x in rest.split())
        if len(header['translate']) != 3:
          raise DataError(f'need 3 floats, got {rest.decode(errors="replace")!r}')
      elif key == b'scale':
        header['scale'] = float(rest)
    except ValueError as e:
      raise DataError(f'{name}: bad {key.decode(errors="replace")} line: {e}') from None
  if 'dims' not in header:
    raise DataError(f'{name}: bad dims (no `dim` line in the header)')
  return header, offset


def _decode_runs(runs: bytes, dims: tuple[int, int, int], name: str) -> np.ndarray:
  """Expands (value, count) byte pairs to a bool grid of shape `dims` (file order)."""
  total = int(np.prod(dims))
  if len(runs) % 2:
    raise DataError(f'{name}: truncated data (odd number of run bytes: {len(runs)})')
  pairs = np.frombuffer(runs, np.uint8).reshape(-1, 2)
  counts = pairs[:, 1].astype(np.int64)
  covered = int(counts.sum())
  if covered < total:
    raise DataError(f'{name}: truncated data (runs cover {covered} of {total} voxels, dims {dims})')
  if covered > total:
    raise DataError(
      f'{name}: run lengths sum to {covered}, expected {total} = {"x".join(map(str, dims))}'
    )
  return np.repeat(pairs[:, 0] > 0, counts).reshape(dims)


def read_binvox(path_or_bytes: str | os.PathLike | bytes) -> tuple[np.ndarray, dict[str, Any]]:
  """Reads a binvox file (path, or the file's bytes).

  Returns:
    voxels: bool [D, H, W], the file grid transposed with (0, 2, 1) as every peer does.
    header: {'dims': the file's dims (D, W, H), 'translate': 3 floats, 'scale': float}.
  Raises:
    ValueError naming the file when it is malformed or truncated.
  """
  if isinstance(path_or_bytes, bytes):
    data, name = path_or_bytes, '<binvox bytes>'
  else:
    name = os.fspath(path_or_bytes)
    with open(name, 'rb') as f:
      data = f.read()
  header, offset = _parse_header(data, name)
  grid = _decode_runs(data[offset:], header['dims'], name)
  return np.ascontiguousarray(grid.transpose(_AXES)), header


def _encode_runs(flat: np.ndarray) -> bytes:
  """Run-length encodes a flat bool array as (value, count <= 255) byte pairs."""
  if flat.size == 0:
    return b''
  change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
  starts = np.concatenate([[0], change])
  lengths = np.diff(np.concatenate([starts, [flat.size]]))
  values, counts = [], []
  for value, length in zip(flat[starts], lengths):
    full, rest = divmod(int(length), 255)
    values += [value] * full + ([value] if rest else [])
    counts += [255] * full + ([rest] if rest else [])
  return np.stack([np.asarray(values, np.uint8), np.asarray(counts, np.uint8)], 1).tobytes()


def write_binvox(
  path: str | os.PathLike,
  voxels: np.ndarray,
  translate: Sequence[float] = (0.0, 0.0, 0.0),
  scale: float = 1.0,
) -> None:
  """Writes bool `voxels` [D, H, W] (peers' order) as a binvox file, atomically."""
  voxels = np.asarray(voxels)
  if voxels.ndim != 3:
    raise ValueError(f'{path}: voxels must be 3-D, got shape {voxels.shape}')
  grid = voxels.astype(bool).transpose(_AXES)
  header = (
    f'#binvox 1\ndim {" ".join(map(str, grid.shape))}\n'
    f'translate {" ".join(repr(float(t)) for t in translate)}\n'
    f'scale {float(scale)!r}\ndata\n'
  ).encode()
  payload = header + _encode_runs(grid.reshape(-1))
  with report.atomic_write(os.fspath(path), 'wb') as f:
    f.write(payload)
