"""The one error type for unusable data: a corrupt or missing file, a bad split."""


class DataError(ValueError):
  """A data file, folder or split cannot be used; the message names it. Commands print it
  as one line (`error: ...`), without a traceback."""
