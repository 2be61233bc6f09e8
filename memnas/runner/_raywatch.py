"""A watchdog that ends a local Ray session's processes once the driver that started it is gone."""

# Run as a script (``python _raywatch.py ...``, see `memnas.runner.executors.start_ray`):
# it imports nothing of memnas, so it starts in a few milliseconds. Linux only (/proc).

from __future__ import annotations

import os
import select
import signal
import sys
import time

POLL_S = 0.25     # how often the driver's and the raylet's lives are checked


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # gone, or not ours to read
        return b""


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time in clock ticks)`` of a process, or None when it is gone."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text[text.rfind(b")") + 2:].split()   # after "pid (comm) "
    return fields[0].decode(), int(fields[19])


def _ray_server(cmdline: bytes, ray_dir: str, session_dir: str) -> bool:
    """Whether a command line is one of Ray's servers (a program or script of Ray's
    package as the command or one of its first arguments) for that session."""
    args = cmdline.split(b"\0")
    return session_dir.encode() in cmdline and \
        any(a.startswith(ray_dir.encode() + b"/") for a in args[:3])


def _holds(pid: int, folder: str) -> bool:
    """Whether a process has a file under ``folder`` open (Ray's processes keep their
    logs open in their session's folder)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(folder + "/"):
                return True
        except OSError:  # closed meanwhile
            continue
    return False


def session_pids(session_dir: str, node_id: str, raylet: tuple[int, int] | None,
                 exclude: set[int], ray_dir: str) -> list[int]:
    """The live processes of one Ray session on this machine.

    Ray's own servers (GCS, raylet, monitors: programs of Ray's package) name the
    session folder on their command line. Workers and agents rename themselves
    (``ray::IDLE``, ``ray::DashboardAgent``) and keep log files of the session's folder
    open; an agent's renaming overwrites part of its environment, a worker's does not
    (its environment, which its own children inherit, names its raylet:
    ``RAY_RAYLET_PID``, counted only for processes started after that raylet, so a
    reused pid does not match; ``RAY_NODE_ID`` names the node).

    Args:
      session_dir: the session's folder (``/tmp/ray/session_...``).
      node_id: the session's node id (hex).
      raylet: ``(pid, start time)`` of the session's raylet, if known.
      exclude: pids never to return (the driver, this watchdog).
      ray_dir: the folder of Ray's package (``.../site-packages/ray``).
    """
    marks = {f"RAY_NODE_ID={node_id}".encode()} if node_id else set()
    if raylet is not None:
        marks.add(f"RAY_RAYLET_PID={raylet[0]}".encode())
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        pid = int(name)
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X"):  # gone, or a zombie: nothing to end
            continue
        cmdline = _read(f"/proc/{pid}/cmdline")
        if _ray_server(cmdline, ray_dir, session_dir) or \
                cmdline.startswith(b"ray::") and _holds(pid, session_dir):
            out.append(pid)
        elif marks & set(_read(f"/proc/{pid}/environ").split(b"\0")) and \
                (raylet is None or stat[1] >= raylet[1]):
            out.append(pid)
    return out


def sweep(session_dir: str, node_id: str, raylet: tuple[int, int] | None,
          exclude: set[int], ray_dir: str, rounds: int = 5) -> int:
    """SIGKILLs the session's processes, again until none is left (a raylet may start
    one more on the way); returns how many were killed."""
    killed = 0
    for _ in range(rounds):
        pids = session_pids(session_dir, node_id, raylet, exclude, ray_dir)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:  # ended on its own meanwhile
                pass
        time.sleep(0.1)
    return killed


def watch(driver: int, fd: int, raylet: tuple[int, int] | None) -> str:
    """Waits until the driver is gone (its end of the pipe closed, or this process
    re-parented) or the session's raylet is; returns which."""
    while True:
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if ready and not os.read(fd, 4096):
            return "driver closed the pipe"
        if os.getppid() != driver:
            return "driver died"
        if raylet is not None:
            now = _stat(raylet[0])
            if now is None or now[0] in ("Z", "X") or now[1] != raylet[1]:
                return "raylet ended"


def main(argv: list[str]) -> int:
    """``DRIVER_PID FD SESSION_DIR NODE_ID RAYLET_PID RAY_DIR``: watch, then sweep."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is for the driver
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    driver, fd, session_dir, node_id, raylet_pid, ray_dir = argv
    stat = _stat(int(raylet_pid)) if raylet_pid.isdigit() else None
    raylet = (int(raylet_pid), stat[1]) if stat else None
    watch(int(driver), int(fd), raylet)
    sweep(session_dir, node_id, raylet, {os.getpid(), int(driver)}, ray_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
