"""Tools for testing memnas under real faults: a throwaway PostgreSQL server to stop and start (outages)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

BIN = "/usr/lib/postgresql/15/bin"


def why_not() -> str | None:
    """Why this machine cannot run a server of its own, or None when it can."""
    if not os.path.exists(os.path.join(BIN, "pg_ctl")):
        return f"PostgreSQL 15's binaries are not in {BIN}"
    if os.geteuid() != 0 and shutil.which("runuser") is None:
        return "needs root (to run the server as user postgres)"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no user postgres"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """A PostgreSQL 15 server in a temporary folder on a free port, owned by the test.

    `stop` and `start` make a real outage (the server process ends; clients see
    "the database system is shutting down", then "connection refused");
    `terminate_connections` drops every client connection as an administrator would.
    """

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="memnas-pg-")
        os.chmod(self.dir, 0o777)
        self.data = os.path.join(self.dir, "data")
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres(f"{BIN}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                          "--no-sync")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nfsync = off\n"
                    f"unix_socket_directories = '{self.dir}'\n")

    def _as_postgres(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(prefix + list(cmd), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, cwd=self.dir)

    def start(self) -> None:
        """Starts the server and waits until it accepts connections."""
        self._as_postgres(f"{BIN}/pg_ctl", "-D", self.data, "-w", "-l",
                          os.path.join(self.dir, "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        """Stops the server ("fast": open transactions are rolled back, clients cut off)."""
        self._as_postgres(f"{BIN}/pg_ctl", "-D", self.data, "-w", "-m", mode, "stop")

    def terminate_connections(self) -> int:
        """Drops every other client connection (``pg_terminate_backend``); how many."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE pid <> pg_backend_pid() AND backend_type = "
                                "'client backend'").fetchall()
        return len(rows)

    def outage(self, seconds: float) -> None:
        """Stops the server for ``seconds``, then starts it again."""
        self.stop()
        time.sleep(seconds)
        self.start()

    def close(self) -> None:
        """Stops the server if it runs and deletes its folder."""
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
