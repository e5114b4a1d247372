"""The real clients (relay-compiler, Apollo Client 3 with persisted queries, trusted documents in production)
against a live server: scripts/clients. It installs Node 22 and the clients from the npm registry into
examples/clients/node_modules and takes about half a minute, so it runs when GROUPGRAPH_CLIENT_CHECKS=1."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_real_clients_against_a_live_server() -> None:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("scripts/clients needs node and npm, which are not installed here")
    if os.environ.get("GROUPGRAPH_CLIENT_CHECKS") != "1":
        pytest.skip("the real clients run with GROUPGRAPH_CLIENT_CHECKS=1 (or run scripts/clients)")
    done = subprocess.run([str(ROOT / "scripts" / "clients")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert done.stdout.rstrip().endswith("clients: ok")
