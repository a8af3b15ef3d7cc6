"""How a long-running `stash` process starts and stops: logging, signals, a bounded end.

What it is for: `add_log_flags` / `setup_logging` give `stash operator`, `stash webhook`
and the agent commands the same `--log-level` and `--log-format` (`stash.logs`);
`run_until_signalled` runs the command's coroutine in a new event loop where SIGTERM
and SIGINT cancel it, so its `finally` blocks run (lease released, webhooks
unregistered, restic stopped). The shutdown is bounded: if the coroutine has not
finished `grace` seconds after the signal, or a second signal arrives, the process logs
that and exits with status 1 instead of hanging until the kubelet's SIGKILL.

Not for: parsing sub-command flags (each `cli` module) or what the command does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from stash.cli.usage import UsageError
from stash.logs import FORMATS, configure

__all__ = ["SHUTDOWN_GRACE", "add_log_flags", "run_until_signalled", "setup_logging"]

log = logging.getLogger(__name__)

#: Seconds a cancelled command may take to finish: below Kubernetes' default
#: terminationGracePeriodSeconds (30), so the process says why it stopped waiting.
SHUTDOWN_GRACE = 25.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def add_log_flags(p: argparse.ArgumentParser) -> None:
    """`--log-level` and `--log-format`."""
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument(
        "--log-format",
        choices=FORMATS,
        help="text or json (default: $STASH_LOG_FORMAT, else text on a terminal, json otherwise)",
    )


def setup_logging(args: argparse.Namespace) -> None:
    """Configure logging from `add_log_flags`' flags (and the environment)."""
    try:
        configure(getattr(args, "log_level", "INFO"), getattr(args, "log_format", None))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _force_exit(why: str) -> None:
    log.error("%s; exiting without waiting any longer", why)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(1)


def run_until_signalled(
    main: Callable[[], Awaitable[int | None]],
    *,
    signalled_exit: int = 0,
    grace: float = SHUTDOWN_GRACE,
) -> int:
    """Run `main()` until it returns (its exit code; None is 0) or a signal cancels it
    (`signalled_exit`); see the module docstring for the bound on shutting down."""

    async def supervise() -> int:
        task = asyncio.ensure_future(main())
        loop = asyncio.get_running_loop()
        signalled: list[signal.Signals] = []

        def on_signal(sig: signal.Signals) -> None:
            if signalled:
                _force_exit(f"{sig.name} again while shutting down")
            signalled.append(sig)
            log.info("%s received; shutting down", sig.name)
            task.cancel()
            loop.call_later(grace, _force_exit, f"shutdown took longer than {grace:.0f}s")

        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, on_signal, sig)
        try:
            code = await task
        except asyncio.CancelledError:
            if not signalled:
                raise
            return signalled_exit
        finally:
            for sig in _SIGNALS:
                with contextlib.suppress(NotImplementedError):
                    loop.remove_signal_handler(sig)
        return 0 if code is None else int(code)

    return asyncio.run(supervise())
