"""server.logs_dir: replicas sharing a home each write their own access log (one file
appended by several hosts over a network file system interleaves or loses lines)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from enclave.config import Settings
from enclave.gateway.serve import setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root, access = logging.getLogger(), logging.getLogger("enclave.access")
    saved = (root.handlers[:], root.level, access.handlers[:], access.propagate)
    yield
    for handler in access.handlers:
        if handler not in saved[2]:
            handler.close()
    root.handlers[:], access.handlers[:] = saved[0], saved[2]
    root.setLevel(saved[1])
    access.propagate = saved[3]


def test_logs_default_to_the_homes_logs_folder(tmp_path: Path) -> None:
    assert Settings(home=tmp_path).logs_dir == tmp_path / "logs"


@pytest.mark.usefixtures("restore_logging")
def test_the_access_log_goes_to_server_logs_dir(tmp_path: Path) -> None:
    own = tmp_path / "logs" / "replica-1"
    settings = Settings(home=tmp_path, server={"logs_dir": own})
    setup_logging(settings)
    logging.getLogger("enclave.access").info('{"path": "/v1/models"}')
    for handler in logging.getLogger("enclave.access").handlers:
        handler.flush()
    assert (own / "access.log").read_text() == '{"path": "/v1/models"}\n'
    assert not (tmp_path / "logs" / "access.log").exists()
