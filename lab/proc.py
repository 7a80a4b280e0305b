"""Running commands and stopping processes by PID (never by name)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time

log = logging.getLogger("lab")


class CommandError(subprocess.CalledProcessError):
    """A CalledProcessError whose message carries stderr, so failures explain themselves."""

    def __str__(self) -> str:
        err = (self.stderr or "").strip()
        return super().__str__() + (f" stderr: {err}" if err else "")


def run(args, *, netns: str | None = None, check: bool = True, env: dict | None = None,
        timeout: float | None = 60) -> subprocess.CompletedProcess:
    """Run an argument list (no shell), optionally inside a network namespace."""
    args = [str(a) for a in args]
    if netns:
        args = ["ip", "netns", "exec", netns, *args]
    proc = subprocess.run(args, capture_output=True, text=True,
                          env=None if env is None else {**os.environ, **env}, timeout=timeout)
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, args, proc.stdout, proc.stderr)
    return proc


def state(pid: int) -> str | None:
    """Process state letter from /proc (R, S, D, Z, ...), None if the PID does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may contain spaces and parentheses: the state follows the last ')'.
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def alive(pid: int) -> bool:
    # A zombie has exited; PID 1 here reaps late, so it can stay <defunct> for seconds.
    return state(pid) not in (None, "Z", "X")


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def read_pidfile(path) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def stop_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM, wait, then SIGKILL. Returns once the process is gone or a zombie."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.02)
    log.warning("pid %d still alive after SIGKILL (state %s)", pid, state(pid))


def stop_pidfile(path, timeout: float = 5.0) -> int | None:
    """Stop the daemon named in a pidfile. Returns its PID (None if there was none).

    The PID is only signalled when its command line names this pidfile: a pidfile left by a
    killed run may point at a PID that an unrelated process reuses now.
    """
    pid = read_pidfile(path)
    if pid is None or not alive(pid):
        return None
    if str(path) not in cmdline(pid):
        log.warning("pidfile %s names pid %d, which is not ours: left alone", path, pid)
        return None
    stop_pid(pid, timeout)
    return pid


class ChildProcess:
    """A program this process started (``self.proc``), stopped by its own PID."""

    proc: subprocess.Popen | None = None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL by default: a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
