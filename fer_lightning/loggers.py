"""Logger factories that need more than a `_target_`."""

from __future__ import annotations

import logging
import os
import socket
import threading
from urllib.parse import urlparse

from pytorch_lightning.loggers import WandbLogger

log = logging.getLogger(__name__)

# How long to wait for the wandb server before logging offline instead.
REACH_TIMEOUT_S = 3.0


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    return os.path.exists(netrc) and "api.wandb.ai" in open(netrc).read()


def wandb_server() -> tuple[str, int]:
    """The host and port wandb would talk to (`WANDB_BASE_URL`, else wandb's cloud)."""
    url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    return url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)


def reachable(host: str, port: int, timeout: float = REACH_TIMEOUT_S) -> bool:
    """Whether a TCP connection to `host` opens within `timeout` seconds, name lookup included
    (which a socket timeout does not bound, hence the thread)."""
    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def wandb_logger(**kwargs) -> WandbLogger:
    """A WandbLogger that is online only when credentials exist and the server answers, so it
    never prompts, hangs or crashes for want of a network.

    The original project logged to wandb interactively; on a machine without a network or login,
    wandb would ask for a key and block the run, and with a key but no network it waits 90 s and
    fails. Offline runs can be uploaded with `wandb sync`.
    """
    offline = not _wandb_logged_in() or os.environ.get("WANDB_MODE") == "offline"
    if not offline and "offline" not in kwargs and not reachable(*wandb_server()):
        host, port = wandb_server()
        log.warning(
            "wandb server %s:%d does not answer: logging offline (wandb sync later)", host, port
        )
        offline = True
    os.environ.setdefault("WANDB_SILENT", "true")
    kwargs.setdefault("offline", offline)
    return WandbLogger(**kwargs)
