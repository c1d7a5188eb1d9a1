"""What every command shares: how it runs, how it parses flags, and what it may read.

  if __name__ == '__main__':
    cli.run(main)

A user's mistake (errors.UserError) ends the command with one line, `error: <message>`, on
stderr and exit status 1; a run stopped by a signal (errors.Interrupted, after its save)
with its one line and status 128 + signum; any other exception is a bug and keeps its
traceback. Paths come from local (or mounted) folders only: a URL is refused
(`check_local`).
"""

import logging as std_logging
import re
import sys
from typing import Any, Callable, Sequence

from absl import app, logging

from refine3d_jax import errors

NO_NETWORK = (
  'refine3d_jax reads and writes local (or mounted) folders only and fetches '
  'nothing from the network at run time: download or copy it first'
)


def run(main: Callable[[list[str]], Any]) -> None:
  """`app.run(main)` with `parse_flags`; a UserError from `main` exits with status 1 and
  one line `error: <message>` (no traceback), an Interrupted with its line and 128 + signum.
  Orbax's per-save INFO lines (dozens per checkpoint) are dropped; its warnings are kept."""

  def main_reporting_user_errors(argv: list[str]) -> Any:
    logging.get_absl_handler().addFilter(_quiet_orbax)
    try:
      return main(argv)
    except errors.UserError as e:
      raise SystemExit(f'error: {e}') from None
    except errors.Interrupted as e:
      print(e, file=sys.stderr)
      sys.exit(128 + e.signum)

  app.run(main_reporting_user_errors, flags_parser=parse_flags)


def _quiet_orbax(record: std_logging.LogRecord) -> bool:
  # std_logging's level: absl.logging.WARNING is absl's own scale (1), which every record passes.
  return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def no_arguments(argv: Sequence[str]) -> None:
  """A command that takes flags only: any positional argument is a usage error."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')


def positive_ints(values: Sequence[Any], message: str) -> list[int]:
  """`values` as integers, at least one and all positive; otherwise a usage error `message`."""
  try:
    ints = [int(v) for v in values]
    assert ints and min(ints) > 0
  except (ValueError, AssertionError):
    raise app.UsageError(message) from None
  return ints


def parse_flags(argv: Sequence[str]) -> list[str]:
  """absl's flag parsing, with an unknown `--config.KEY=...` reported in one line instead of
  ml_collections' traceback."""
  try:
    return app.parse_flags_with_usage(list(argv))
  except (AttributeError, KeyError) as e:  # a locked ConfigDict has no such key
    detail: Any = e
    while isinstance(detail, BaseException) and detail.args:  # KeyError inside AttributeError
      detail = detail.args[0]
    lines = str(detail).splitlines()
    key = lines[0].strip('\'"')
    hint = ' '.join(line.strip('\'"') for line in lines[1:])
    culprits = [
      a.split('=')[0]
      for a in argv
      if a.startswith('--config.') and key in a.split('=')[0].split('.')
    ]
    sys.exit(
      f'error: {", ".join(culprits) or key}: no such config key {key!r}'
      + (f'. {hint}' if hint else '')
    )


def is_url(path: Any) -> bool:
  """Whether `path` names something over the network (http://, gs://, s3://, ...)."""
  return isinstance(path, str) and re.match(r'^[A-Za-z][A-Za-z0-9+.-]*://', path) is not None


def check_local(path: str | None, what: str) -> None:
  """Raises UserError naming `what` (e.g. '--workdir') when `path` is a URL."""
  if is_url(path):
    raise errors.UserError(f'{what} = {path!r} is a URL; {NO_NETWORK}')
