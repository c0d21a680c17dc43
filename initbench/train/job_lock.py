"""One process per job: a lock on the job folder, so that the same job launched twice at once (a sweep started in
two terminals, a Slurm job requeued while its first attempt still runs) is trained by one process only.

The lock is `fcntl.flock` on `<job dir>/.initbench.lock`, which also records who holds it (pid, host, start time),
so the process that finds it taken can say which one trains the job, and then skips it (a sweep goes on with its
other jobs). The kernel releases a flock when its process ends in any way, SIGKILL included, so a lock file left
by a dead process never blocks a relaunch: the next process takes the lock on the same file and rewrites it. The
holder removes the file when it is done, successful or not. On network file systems flock is emulated with POSIX
locks (Linux NFS since 2.6.12), which the NFS lock daemon shares between nodes.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import time
from pathlib import Path

LOCK_FILE = ".initbench.lock"


class JobLock:
    def __init__(self, job_dir: Path):
        self.path = Path(job_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if no other process holds it; True if this process now holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        record = json.dumps({"pid": os.getpid(), "host": platform.node(),
                             "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        return True

    def holder(self) -> str:
        """Who holds the lock, as its file records it."""
        try:
            record = json.loads(self.path.read_text())
            return f"process {record['pid']} on {record['host']} (since {record['since']})"
        except (OSError, ValueError, KeyError):
            return "another process (it is starting)"

    def release(self) -> None:
        """Remove the lock file, then release the lock (in that order, so no one locks a file about to vanish)."""
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None
