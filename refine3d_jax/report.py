"""Result files written whole or not at all: JSON, markdown + CSV tables, figures.

The one writer of every file format the tools produce (results.py and eval_tables.py decide what the
tables of results.json say; this module how cells, tables and files are written). Every
writer goes through `atomic_write` (a temp file in the target folder, then `os.replace`),
so a crash or a full disk never leaves a half-written result behind. Cells without a
source are '-' in markdown and empty in CSV.
"""

import contextlib
import csv
import json
import os
import tempfile
from typing import Any, Iterable, Iterator, Sequence


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


def fmt(value: Any, digits: int = 3) -> str:
  """A markdown cell: floats to `digits` decimals, None as '-', anything else as str."""
  if value is None:
    return '-'
  if isinstance(value, float):
    return f'{value:.{digits}f}'
  return str(value)


def csv_value(value: Any, digits: int | None = 6) -> Any:
  """A CSV cell: floats rounded to `digits` decimals (None: full precision), '' for None."""
  if value is None:
    return ''
  return round(value, digits) if digits is not None and isinstance(value, float) else value


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = '') -> str:
  """A GitHub markdown table (cells by `fmt`), the caption (if any) as a paragraph above it."""
  lines = [caption, ''] if caption else []
  lines.append('| ' + ' | '.join(header) + ' |')
  lines.append('|' + '---|' * len(header))
  lines += ['| ' + ' | '.join(fmt(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


def document(*sections: tuple[str, str, Sequence[str]]) -> str:
  """Markdown of (caption, table, notes) sections, notes as a list under each table."""
  out = []
  for cap, table, notes in sections:
    out += [cap, '', table.rstrip('\n'), '']
    if notes:
      out += [f'- {n}' for n in notes] + ['']
  return '\n'.join(out)


def write_table(
  stem: str,
  markdown: str,
  header: Sequence[str],
  rows: Iterable[Sequence[Any] | dict],
  digits: int | None = 6,
) -> list[str]:
  """Writes `<stem>.md` (`markdown` as given) and `<stem>.csv` (`header`, then the rows:
  sequences, or dicts read by header key; cells by `csv_value(cell, digits)`); returns
  the two paths."""
  with atomic_write(stem + '.md') as f:
    f.write(markdown)
  with atomic_write(stem + '.csv') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(
      [
        [
          csv_value(c, digits)
          for c in ([row.get(k) for k in header] if isinstance(row, dict) else row)
        ]
        for row in rows
      ]
    )
  return [stem + '.md', stem + '.csv']


def save_figure(fig: Any, path: str, **kwargs: Any) -> None:
  """`fig.savefig` into `path` atomically (format from the extension)."""
  fmt_name = os.path.splitext(path)[1].lstrip('.') or 'png'
  with atomic_write(path, 'wb') as f:
    fig.savefig(f, format=fmt_name, **{'dpi': 120, 'bbox_inches': 'tight', **kwargs})
