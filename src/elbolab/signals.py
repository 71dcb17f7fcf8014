"""SIGTERM and SIGHUP outside training unwind a process like Ctrl-C (the trainer takes them over while it trains,
to checkpoint first): the command line's process and each of `compare`'s training processes install this."""

from __future__ import annotations

import signal


class SignalStop(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside training, raised like Ctrl-C: `finally` blocks and the atomic writer's cleanup
    run (no temporary file is left), and the process exits with 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_stop(signum: int, frame: object) -> None:
    """The handler: raise `SignalStop` for the signal."""
    raise SignalStop(signum)


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP raise `SignalStop` in this process's main thread (nothing, off the main thread)."""
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            try:
                signal.signal(getattr(signal, name), raise_stop)
            except ValueError:  # not the main thread
                return
