"""Streamlit dashboard over a memnas store (read-only): experiments, progress, Pareto fronts.

Importing this package is cheap: Streamlit and Plotly load only inside the app.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket
import subprocess
import sys
from typing import Mapping

from memnas.errors import ConfigError

__all__ = ["ENV_VAR", "app_path", "check_port", "launch", "ssh_hint"]

ENV_VAR = "MEMNAS_STORE"
"""Environment variable the app reads its store URL from (default ``sqlite:///memnas.db``)."""


def app_path() -> str:
    """The absolute path of the dashboard's Streamlit entry script.

    Returns:
      Path of ``memnas/dashboard/app.py``, for ``streamlit run`` or ``AppTest.from_file``.
    """
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.py")


def command(port: int = 8501, open_browser: bool = False) -> list[str]:
    """The command line that `launch` starts: ``python -m memnas.dashboard._serve`` with
    ``streamlit run``'s flags (it warms the caches, then runs ``streamlit run app.py``).

    Args:
      port: TCP port to serve on (bound to 127.0.0.1 only).
      open_browser: let Streamlit open a browser tab (otherwise headless).

    Returns:
      The argument list, starting with this Python's executable.
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(f"port must be an integer in 1..65535, got {port!r}")
    return [sys.executable, "-m", "memnas.dashboard._serve",
            "--server.headless", "false" if open_browser else "true",
            "--server.address", "127.0.0.1",
            "--server.port", str(port),
            # A viewer of a store, not an app being edited: no polling of source files.
            "--server.fileWatcherType", "none",
            "--browser.gatherUsageStats", "false"]


def ssh_hint(port: int, environ: Mapping[str, str] | None = None) -> str | None:
    """How to reach the dashboard from a laptop, when this process runs in an SSH session.

    The server binds 127.0.0.1 only; from another machine it is reached through an SSH
    tunnel to this host: the server address of ``$SSH_CONNECTION`` (this host's name when
    that is a loopback address, or when only ``$SSH_CLIENT`` is set), as ``$USER`` (or
    ``$LOGNAME``), with ``-p`` when SSH listens on another port than 22.

    Args:
      port: the dashboard's port (the tunnel uses the same one on the laptop).
      environ: the environment to read (default ``os.environ``).

    Returns:
      ``"from your laptop: ssh -N -L PORT:127.0.0.1:PORT USER@HOST, then open
      http://127.0.0.1:PORT"``, or None outside an SSH session.
    """
    env = os.environ if environ is None else environ
    conn = env.get("SSH_CONNECTION", "").split()
    client = env.get("SSH_CLIENT", "").split()
    if len(conn) >= 4:
        host, ssh_port = conn[2], conn[3]
    elif len(client) >= 3:
        host, ssh_port = "", client[2]
    else:
        return None
    try:
        loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        loopback = not host
    if loopback:
        host = socket.gethostname()
    user = env.get("USER") or env.get("LOGNAME")
    target = f"{user}@{host}" if user else host
    flag = f"-p {ssh_port} " if ssh_port not in ("", "22") else ""
    return (f"from your laptop: ssh -N {flag}-L {port}:127.0.0.1:{port} {target}, "
            f"then open http://127.0.0.1:{port}")


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """Refuses a port another process listens on, before anything is warmed or printed.

    Binds ``host:port`` as the server will (``SO_REUSEADDR``, so a port left in
    TIME_WAIT by a server that just stopped counts as free) and lets it go at once.

    Raises:
      ConfigError: the port is taken; the message names it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            why = "is in use" if e.errno == errno.EADDRINUSE else "needs more privileges"
            raise ConfigError(f"port {port} on {host} {why}; pick another with --port") from None


def launch(store_url: str, port: int = 8501, open_browser: bool = False) -> int:
    """Serves the dashboard for ``store_url`` until Streamlit exits or Ctrl-C.

    Runs `command` in a subprocess with ``MEMNAS_STORE`` set: it first reads what the
    Experiment page of the most recent experiments needs into the server's caches, then
    ``streamlit run app.py`` serves (and prints the URL). The dashboard only reads the store.

    Args:
      store_url: SQLAlchemy URL of the store (a bare path means a SQLite file).
      port: TCP port to serve on, on 127.0.0.1.
      open_browser: open a browser tab on the app.

    Returns:
      Streamlit's exit code (0 after a clean Ctrl-C).

    Raises:
      ValueError: ``store_url`` is empty or ``port`` is not a valid port.
      ConfigError: the port is taken (`check_port`).
    """
    if not isinstance(store_url, str) or not store_url.strip():
        raise ValueError(f"store_url must be a non-empty SQLAlchemy URL, got {store_url!r}")
    cmd = command(port, open_browser)
    check_port(port)
    env = dict(os.environ, **{ENV_VAR: store_url})
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches Streamlit too; give it time to stop on its own.
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
        return 0
