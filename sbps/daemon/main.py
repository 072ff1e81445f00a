"""``sbps-marshal``: the composition root, process lifecycle, signals and systemd protocol.

Owns start-up (configuration, logging, building every component once and passing it down),
the supervised tasks (reconciler, watchdog, HTTP), and shutdown: SIGTERM or SIGINT stops
gracefully within a deadline (DNS withdrawn if configured), a second signal forces exit.
One instance per ``reconcile.state_dir`` (``sbps.daemon.instance``): the lock is taken right after
the configuration is read, before logging or any component.
The process ends only on such a deliberate stop (or ``--once``): a pass that fails with a
bug fails that pass (the reconciler keeps going), the reconciler task is restarted if it
dies, and DNS records are withdrawn only on a deliberate stop (``dns.withdraw_on_stop``),
never because something died (safety invariant 10). Exit codes: 0 clean stop (or
``--once`` converged), 1 a task without restart died, start-up failed, an image failed or
another instance holds the lock, 2 configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from sbps import __version__
from sbps.config import Loaded, load
from sbps.config.choices import DnsMode
from sbps.core import logs
from sbps.core.errors import ConfigError, SbpsError
from sbps.core.model import ImageState
from sbps.daemon.compose import Components, build
from sbps.daemon.instance import AlreadyRunning, InstanceLock
from sbps.daemon.sdnotify import Notifier
from sbps.daemon.supervisor import Supervisor
from sbps.publish.http.limits import raise_nofile

log = logging.getLogger(__name__)
STOP_DEADLINE = 20.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sbps-marshal", description="The SBPS marshal: projects "
                                "labelled boot images as read-only iSCSI LUNs.")
    p.add_argument("--config", metavar="FILE", help="configuration file "
                   "(default /etc/sbps/marshal.toml)")
    p.add_argument("--once", action="store_true", help="reconcile until converged, then exit "
                   "(0 converged, 1 an image failed)")
    level = p.add_mutually_exclusive_group()
    level.add_argument("--debug", action="store_const", dest="level", const="debug",
                       help="log at debug level (overrides log.level)")
    level.add_argument("--quiet", action="store_const", dest="level", const="warning",
                       help="log warnings and errors only (overrides log.level)")
    p.add_argument("--log-format", choices=("text", "json"),
                   help="log line format (overrides log.format)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    flags = {}
    if args.level:
        flags["log.level"] = args.level
    if args.log_format:
        flags["log.format"] = args.log_format
    try:
        loaded = load(args.config, flags=flags)
    except ConfigError as exc:
        print(f"sbps-marshal: configuration error: {exc}", file=sys.stderr)
        return 2
    # Before anything else: a second instance must not bind, reconcile, or withdraw DNS.
    lock = InstanceLock(loaded.config.reconcile.state_dir)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"sbps-marshal: {exc}; exiting", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"sbps-marshal: cannot take the lock {lock.path}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    logs.setup(loaded.config.log.level, loaded.config.log.format)
    if not loaded.file_read:
        log.warning("configuration: %s does not exist: running on defaults and "
                    "SBPS_MARSHAL_* environment variables", loaded.path)
    log.debug("open-files limit %d", raise_nofile())  # the HTTP caps are derived from it
    for warning in loaded.warnings:
        log.warning("configuration: %s", warning)
    try:
        return asyncio.run(Daemon(loaded).run(once=args.once))
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return 2
    finally:
        lock.release()


def run() -> None:
    """Console-script entry point."""
    sys.exit(main(sys.argv[1:]))


class Daemon:
    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded
        self.cfg = loaded.config
        self.notifier = Notifier()
        self.supervisor = Supervisor()
        self.stop = asyncio.Event()
        self.components: Components | None = None
        self._signals = 0
        self._deliberate = False
        """A deliberate stop (a signal, ``--once`` finished): only then is DNS withdrawn."""

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.error("second %s: exiting at once", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s received: stopping", signal.Signals(signum).name)
        self.stop.set()

    async def run(self, once: bool = False) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            self.components = c = await build(self.loaded, self.supervisor)
            log.info("starting: target %s, backend %s, gate %s, dns %s", c.reconciler.iqn,
                     c.backend.name, c.gate.name, c.registrar.name)
            if once:
                code = await self._once(c)
                self._deliberate = True
                return code
            await c.reconciler.run_pass()  # a bug fails only this pass (Status.bug)
            self.notifier.ready(_summary(c))
            if self.notifier.watchdog_interval:
                self.supervisor.start("watchdog", self._watchdog())
            self.supervisor.start("reconciler", self._loop(c), restart=lambda: self._loop(c))
            stop = asyncio.create_task(self.stop.wait())
            failed = asyncio.create_task(self.supervisor.failed.wait())
            await asyncio.wait({stop, failed}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            failed.cancel()
            self._deliberate = self.stop.is_set() and not self.supervisor.failed.is_set()
            return 1 if self.supervisor.failed.is_set() else 0
        except SbpsError as exc:
            log.error("start-up failed: %s", exc)
            return 1
        finally:
            await self._shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _loop(self, c: Components) -> None:
        # The first pass already ran before READY=1; wait for the next trigger or interval.
        await c.reconciler.run(first_pass=False)

    async def _once(self, c: Components) -> int:
        for _ in range(20):
            status = await c.reconciler.run_pass()
            await c.reconciler.staging.idle()
            status = await c.reconciler.run_pass()
            pending = [s for s in status.images if s.state in
                       (ImageState.DISCOVERED, ImageState.STAGING, ImageState.STAGED)]
            if not pending:
                break
        failed = [s for s in status.images if s.state is ImageState.FAILED]
        for s in failed:
            log.error("image %s failed: %s", s.name, s.reason)
        log.info("converged: %s", _summary(c))
        return 1 if failed or status.errors else 0

    async def _watchdog(self) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(self.notifier.watchdog_interval)

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        c = self.components
        await self.supervisor.stop(STOP_DEADLINE)
        if c is None:
            return
        if not self._deliberate:
            if self.cfg.dns.withdraw_on_stop and self.cfg.dns.mode is not DnsMode.OFF:
                log.warning("not a deliberate stop: DNS records are left registered")
        elif self.cfg.dns.withdraw_on_stop and self.cfg.dns.mode is not DnsMode.OFF:
            try:
                await asyncio.wait_for(c.registrar.ensure(False), STOP_DEADLINE)
            except (SbpsError, TimeoutError) as exc:
                log.warning("withdrawing DNS records at stop failed: %s", exc)
        await c.close()
        log.info("stopped")


def _summary(c: Components) -> str:
    s = c.reconciler.status
    counts: dict[str, int] = {}
    for img in s.images:
        counts[img.state.value] = counts.get(img.state.value, 0) + 1
    states = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no images"
    return f"pass {s.passes}: {states}" + (f"; degraded: {', '.join(s.degraded)}"
                                           if s.degraded else "")


if __name__ == "__main__":
    run()
