"""Daemons the lab runs on this machine (apt proxy, object store): start, find, stop.

Each runs in the foreground as the lab's own child in a new session, with its
PID recorded under the lab's state dir. It is found again by that PID or by
its config path on the command line (so `lab down` cleans up after a crash
that lost the PID file), and only those processes are ever stopped.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pgfleet import state
from pgfleet.errors import LabError
from pgfleet.lab.system import kill_pid, processes, read_pid


@dataclass(frozen=True)
class Daemon:
    name: str  # for messages, e.g. "the apt proxy (apt-cacher-ng)"
    program: str  # basename of argv[0], to recognise it in /proc
    dir: Path  # holds <program>.pid and <program>.out
    marker: str  # a path that stands in argv of exactly our instances
    address: str
    port: int

    @property
    def pid_file(self) -> Path:
        return self.dir / f"{self.program}.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.program}.out"

    def answering(self, timeout: float = 1.0) -> bool:
        try:
            with socket.create_connection((self.address, self.port), timeout=timeout):
                return True
        except OSError:
            return False

    def running_pids(self) -> list[int]:
        recorded = read_pid(self.pid_file)
        return sorted(p.pid for p in processes()
                      # a script's argv[0] is its interpreter: look at the first two
                      if any(Path(a).name == self.program for a in p.argv[:2])
                      and (any(self.marker in a for a in p.argv) or p.pid == recorded))

    def ensure(self, argv: list[str], *, start_timeout: float = 20) -> bool:
        """Start unless our instance already answers; True if started now."""
        if self.running_pids() and self.answering():
            return False
        self.stop()
        if self.answering():
            raise LabError(f"something that is not this lab's {self.name} already listens on {self.address}:{self.port} "
                           f"(see 'ss -ltnp sport = :{self.port}'); stop it, then run 'pgfleet lab up' again")
        state.private_dir(self.dir)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        state.write_private(self.pid_file, f"{proc.pid}\n")
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = self.log_file.read_text(errors="replace")[-2000:]
                raise LabError(f"{self.name} exited {proc.returncode} at start: {out or '(no output)'}")
            if self.answering(0.5):
                return True
            time.sleep(0.2)
        raise LabError(f"{self.name} (pid {proc.pid}) does not answer on {self.address}:{self.port} after {start_timeout:.0f} s; "
                       f"see {self.log_file}")

    def stop(self) -> list[int]:
        pids = self.running_pids()
        for pid in pids:
            kill_pid(pid, what=f"stopping {self.name}")
        self.pid_file.unlink(missing_ok=True)
        return pids
