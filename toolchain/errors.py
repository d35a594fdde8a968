"""Errors the toolchain raises on bad input. The CLI prints ``str(error)`` as one line and exits
non-zero (the traceback is shown with ``--debug``)."""


class SpikeportError(Exception):
    """Bad input or an impossible request: the message names the problem (op, layer, file, value)."""


class UnsupportedOpError(SpikeportError):
    pass


class ModelFileError(SpikeportError):
    pass


class QuantizationError(SpikeportError):
    pass


class TargetError(SpikeportError):
    """A target failed to run: a Lava worker crashed, hung or returned malformed results."""
