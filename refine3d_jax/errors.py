"""The errors a user can fix, under one base class, so that every command reports them alike.

`cli.run` prints a UserError as one line, `error: <message>`, and exits with status 1; any
other exception is a bug and keeps its traceback. A subclass keeps the built-in base that
callers caught before it existed (ValueError, FileNotFoundError, ...). The errors of one
module live in it (configlib.ConfigError, photos.InputError, ...); these are shared.
"""

import signal


class UserError(Exception):
  """A mistake the user can fix, named in one line (what is wrong, and where)."""


class DataError(UserError, ValueError):
  """A data file, folder or split cannot be used (corrupt, missing, empty); the message
  names it."""


class NotFoundError(UserError, FileNotFoundError):
  """A dataset, workdir, checkpoint or folder the user named is not there; the message says
  which, and how to make it."""


class NotWritableError(UserError, PermissionError):
  """A folder the user named (a workdir) cannot be written; the message names it."""


class NonFiniteLossError(UserError, FloatingPointError):
  """Training met a NaN or infinite loss; the message names the step and the last good
  checkpoint, which is kept."""


class Interrupted(Exception):
  """Training stopped by SIGTERM or SIGINT after saving a checkpoint of `step` (not a
  mistake: `cli.run` prints the message and exits with status 128 + signum, as the signal
  would have)."""

  def __init__(self, signum: int, step: int, workdir: str = ''):
    where = f'{workdir}: ' if workdir else ''
    super().__init__(
      f'{where}stopped by {signal.Signals(signum).name} after step {step}; '
      'rerun the same command to resume'
    )
    self.signum, self.step = signum, step
