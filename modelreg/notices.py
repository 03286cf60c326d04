"""Notices for people at a terminal: a slow step that would otherwise run in silence.

Library code says them through the ``modelreg`` logger at INFO level, so that
``import modelreg`` in a script or a plugin host stays quiet unless asked;
the command line shows them on stderr (:func:`show`), and so do the worker
processes of a ``--jobs`` run it starts (see :mod:`modelreg.workers`).
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER", "notice", "show", "shown"]

LOGGER = "modelreg"
_HANDLER_NAME = "modelreg-notices"


def notice(message: str) -> None:
    """Say ``message`` to whoever shows notices (the CLI does; a library user may, through logging)."""
    logging.getLogger(LOGGER).info(message)


class _Stderr(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a notice comes (not the stream of when it was
    made: tests and hosts replace sys.stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


def show() -> None:
    """Print notices as ``modelreg: MESSAGE`` lines on stderr; idempotent."""
    logger = logging.getLogger(LOGGER)
    if shown():
        return
    handler = _Stderr()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("modelreg: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def shown() -> bool:
    """True when this process prints notices (so that its workers should too)."""
    return any(handler.get_name() == _HANDLER_NAME for handler in logging.getLogger(LOGGER).handlers)
