"""Result files written whole or not at all: JSON, markdown + CSV tables, figures.

Every writer goes through `atomic_write` (a temp file in the target folder, then
`os.replace`), so a crash or a full disk never leaves a half-written result behind.
"""

import contextlib
import csv
import io
import json
import os
import tempfile
from typing import Any, Iterator, Sequence


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'w') -> Iterator[Any]:
  """`with atomic_write(path) as f:` writes `f` to a temp file beside `path` and renames it
  to `path` only when the block succeeds (the temp file is removed otherwise)."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix='.tmp', prefix=f'.{os.path.basename(path)}.', dir=folder)
  try:
    with os.fdopen(fd, mode) as f:
      yield f
    os.chmod(tmp, 0o666 & ~_umask())  # what open() would give; mkstemp makes it 0600
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_json(path: str, obj: Any) -> None:
  with atomic_write(path) as f:
    json.dump(obj, f, indent=1, sort_keys=False)
    f.write('\n')


def short_path(path: str, parts: int = 2) -> str:
  """The last `parts` components of `path`, for captions: committed tables should not
  carry the absolute path of the machine they were made on (results.json keeps it)."""
  return '/'.join(os.path.normpath(path).split(os.sep)[-parts:])


def fmt(value: Any, digits: int = 3) -> str:
  """A table cell: floats to `digits` decimals, None as '-', anything else as str."""
  if value is None:
    return '-'
  if isinstance(value, float):
    return f'{value:.{digits}f}'
  return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                   caption: str = '') -> str:
  """A GitHub markdown table, the caption (if any) as a paragraph above it."""
  lines = [caption, ''] if caption else []
  lines.append('| ' + ' | '.join(header) + ' |')
  lines.append('|' + '---|' * len(header))
  lines += ['| ' + ' | '.join(fmt(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


def write_table(stem: str, header: Sequence[str], rows: Sequence[Sequence[Any]],
                caption: str = '') -> str:
  """Writes `<stem>.md` (caption + table) and `<stem>.csv` (header + rows, full
  precision); returns the markdown."""
  text = markdown_table(header, rows, caption)
  with atomic_write(stem + '.md') as f:
    f.write(text)
  buf = io.StringIO()
  writer = csv.writer(buf)
  writer.writerow(header)
  writer.writerows([['' if c is None else c for c in row] for row in rows])
  with atomic_write(stem + '.csv') as f:
    f.write(buf.getvalue())
  return text


def save_figure(fig: Any, path: str, **kwargs: Any) -> None:
  """`fig.savefig` into `path` atomically (format from the extension)."""
  fmt_name = os.path.splitext(path)[1].lstrip('.') or 'png'
  with atomic_write(path, 'wb') as f:
    fig.savefig(f, format=fmt_name, **{'dpi': 120, 'bbox_inches': 'tight', **kwargs})

