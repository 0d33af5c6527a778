"""Running a command on a real pseudo-terminal, as a person's shell would."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence


def run_on_terminal(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    timeout: float = 120.0,
    columns: int = 120,
) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on a new pty; its exit code and everything it
    wrote (both streams, as the terminal shows them)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    full_env = {**env, "COLUMNS": str(columns), "LINES": "40"}
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=full_env, cwd=cwd)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
            raise TimeoutError(f"{argv} still running after {timeout} s")
        code = proc.wait(timeout=timeout)
    finally:
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", errors="replace")
