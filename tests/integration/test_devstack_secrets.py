"""``smsdispatch run`` keeps its secrets from other users of the machine (docs/security.md):
``var/`` is private, Redis has a password read from a 0600 file, no secret is on a command
line. The whole ``make run`` is exercised by test_hello_world.py, which checks the same on
the running stack."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from typing import Any

import psutil
import pytest
import redis

from devstack.run import private_dir, redis_config

pytestmark = [pytest.mark.integration, pytest.mark.any_db]


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_var_and_everything_in_it_become_private(tmp_path: Any) -> None:
    var = os.path.join(str(tmp_path), "var")
    os.makedirs(os.path.join(var, "redis"), mode=0o755)
    os.chmod(var, 0o755)
    with open(os.path.join(var, "smsdispatch.db"), "w") as fh:
        fh.write("x")
    os.chmod(os.path.join(var, "smsdispatch.db"), 0o644)
    old = os.umask(0o022)
    try:
        private_dir(var)
        with open(os.path.join(var, "new-file"), "w") as fh:  # created after: private too
            fh.write("y")
    finally:
        os.umask(old)
    assert mode(var) == 0o700 and mode(os.path.join(var, "redis")) == 0o700
    assert mode(os.path.join(var, "smsdispatch.db")) == 0o600
    assert mode(os.path.join(var, "new-file")) == 0o600


def test_redis_gets_a_password_that_no_command_line_shows(tmp_path: Any) -> None:
    var = str(tmp_path)
    conf, port, url = redis_config(var)
    proc = subprocess.Popen(["redis-server", conf], stdout=subprocess.DEVNULL)
    try:
        password = url.split(":", 2)[2].split("@")[0]
        assert int(url.rsplit(":", 1)[1].split("/")[0]) == port
        assert len(password) >= 24
        client = redis.Redis.from_url(url)
        for _ in range(100):  # until it listens
            try:
                assert client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).ping()
        assert password not in " ".join(psutil.Process(proc.pid).cmdline())
        assert mode(conf) == 0o600 and mode(os.path.join(var, "redis")) == 0o700
    finally:
        proc.terminate()
        proc.wait(10)
