"""Fixtures of the HTTP tests that the root conftest does not need."""

import os
import subprocess
import sys

import pytest

from tests.conftest import JWT_SECRET, free_port
from tests.http.processes import answers, wait_for


@pytest.fixture
def serve(settings, tmp_path):
    """Starts `authgres serve` in processes of their own, on a free port; stops them at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*arguments: str, **environment: str) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "AUTHGRES_JWT_SECRET": JWT_SECRET,
            "AUTHGRES_PORT": str(port),
            "AUTHGRES_MAILER_AUTOCONFIRM": "true",
            "AUTHGRES_ARGON2_MEMORY_KIB": "1024",
            "AUTHGRES_ARGON2_TIME_COST": "1",
            **environment,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "authgres", "serve", *arguments], env=env, stderr=(tmp_path / "log").open("ab")
        )
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{base}/health"), "the service to answer")
        return process, base

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
