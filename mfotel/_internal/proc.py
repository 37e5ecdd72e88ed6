"""Helpers for the kit's own helper processes. Imports only ``os`` and ``sys`` at load time:
the lean processes (log relay, tee) import this too."""

from __future__ import annotations

import os
import sys

# The folder holding ``mfotel`` goes first on the path and leaves argv: a task's mfotel may
# come from Metaflow's code package, which a fresh interpreter does not find by itself.
_BOOT = "import sys; sys.path.insert(0, sys.argv.pop(1)); from {} import main; sys.exit(main())"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def parent_gone(parent_pid: int) -> bool:
    """True once the process that started us has exited.

    Asked as "is it still our parent?", not "does the pid exist?": a parent that exited but
    was not reaped yet (a zombie, e.g. while whoever ran it still reads our shared stderr)
    still exists, and waiting for it to go away could wait forever.
    """
    return os.getppid() != parent_pid


def mfotel_root() -> str:
    """The folder that holds the ``mfotel`` package this process runs."""
    import mfotel

    return os.path.dirname(os.path.dirname(os.path.abspath(mfotel.__file__)))


def boot_command(module: str, isolated: bool) -> list[str]:
    """The command that runs ``module.main()`` (its return value the exit code) in a fresh
    interpreter, with this mfotel first on the path; ``isolated`` adds ``-I -S``."""
    flags = ["-I", "-S"] if isolated else []
    return [sys.executable, *flags, "-c", _BOOT.format(module), mfotel_root()]


def spawn_lean(module: str, args: list[str], pass_fds: tuple[int, ...] = ()) -> int:
    """Start ``module.main()`` in a fresh ``python -I -S`` that sees only mfotel's own folder.

    ``-I -S`` skips site-packages and the user's environment: start-up costs ~10 ms instead
    of ~25, paid by every run or task that starts one. The process starts a session of its
    own (a Ctrl-C for the run must not cut logs short) and outlives its parent by design, so
    nobody waits for it. Raises OSError if it cannot be started.
    """
    import subprocess

    try:
        child = subprocess.Popen(
            [*boot_command(module, isolated=True), *args],
            pass_fds=pass_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except subprocess.SubprocessError as exc:
        raise OSError(str(exc)) from exc
    child.returncode = 0  # not ours to reap; keeps Popen's destructor from warning
    return child.pid
