"""Run a check as an unprivileged user: root ignores file modes, CI runs as root."""

from __future__ import annotations

import os
from collections.abc import Callable


def run_as_nobody(fn: Callable[[], str]) -> str:
    """Run ``fn`` in a forked child that gave up root; return its result or its error as text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            outcome = fn()
        except BaseException as e:
            outcome = f"{type(e).__name__}: {e}"
        os.write(write_end, outcome.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        outcome = f.read()
    os.waitpid(pid, 0)
    return outcome
