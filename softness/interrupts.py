"""Ctrl-C and a cluster's wall-time SIGTERM as ``KeyboardInterrupt``, never lost.

Stages keep their checkpoints and remove partial output on ``KeyboardInterrupt``. Python
drops an exception raised while it runs a garbage-collection callback or a ``__del__`` (it
prints "Exception ignored in ..." and carries on), and JAX runs such a callback at every
collection, so a signal that lands there would be lost and the run would go on to its end.
:func:`on_signal` therefore also records the signal, and long loops call :func:`check` at
safe points (the MD driver after every chunk), which raises it again if it was dropped.
"""

from __future__ import annotations

import signal

_received: list[int] = []


def on_signal(signum, frame) -> None:
    """Signal handler: record the signal and raise ``KeyboardInterrupt``."""
    _received.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def install() -> None:
    """Handle SIGINT and SIGTERM with :func:`on_signal` (main thread only)."""
    _received.clear()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)


def check() -> None:
    """Raise ``KeyboardInterrupt`` for a signal received since the last check.

    Where the handler's own exception went through, the stage is already stopping and this is
    not reached; where it was dropped, this stops the stage here instead.
    """
    if _received:
        signum = _received[-1]
        _received.clear()
        raise KeyboardInterrupt(f"signal {signum}")
