"""One error type for every user mistake the toolkit can diagnose.

A :class:`DeepSaliencyError` carries a one-line message that names the file or
parameter, the offending value and what is allowed. Stage entry points catch
it (see :func:`deepsaliency.stage.run_stage`) and exit non-zero with that line
alone, instead of a traceback.
"""


class DeepSaliencyError(ValueError):
    """A diagnosable user error (bad parameter, unreadable file, ...)."""


class ParamError(DeepSaliencyError):
    """A value in ``params.yaml`` (or a keyword argument) is not allowed."""


class ImageError(DeepSaliencyError):
    """An input image cannot be read or decoded."""


class CheckpointError(DeepSaliencyError):
    """A model checkpoint is missing, corrupt or does not fit the architecture."""


class AttributionError(DeepSaliencyError):
    """An attribution map contains NaN or infinite values."""
