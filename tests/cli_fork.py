"""Run the real CLI many times without paying for Python's, torch's and Hydra's imports each time.

`python -m initbench ARGS` spends ~4 s importing before it reads ARGS; a battery of 30+ commands would
spend minutes on that alone. The server (this file, run as a script) imports `initbench.cli` and what it
loads once, then for each command forks a child that takes the command's working directory, environment
and argv, runs `initbench.cli.main()` exactly as `initbench/__main__.py` does, and exits with the status
the interpreter would give: SystemExit's code, or 1 after printing the traceback of an uncaught exception.
The parent has run no torch op, so no thread pool exists that a fork could break.

`CliServer` is the pytest side: `run(argv, cwd, env)` returns a `subprocess.CompletedProcess`.
Protocol: one JSON request per line on the server's stdin, one JSON answer per line on its stdout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(request: dict, out_path: str, err_path: str) -> None:
    """In the forked child: become the command, run it, never return."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(os.open(out_path, os.O_WRONLY), 1)
        os.dup2(os.open(err_path, os.O_WRONLY), 2)
        import initbench.cli

        sys.argv = [str(Path(initbench.cli.__file__).with_name("__main__.py")), *request["argv"]]
        try:
            initbench.cli.main()
            code = 0
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
        except BaseException:  # what the interpreter does with an uncaught exception
            import traceback

            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _wait(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -signal.SIGKILL
        time.sleep(0.005)


def serve() -> None:
    """Answer requests from stdin until it closes."""
    import initbench.cli  # noqa: F401  the imports every child would otherwise pay for
    import initbench.data  # noqa: F401
    import initbench.results.tables  # noqa: F401
    import initbench.train.runner  # noqa: F401

    protocol = sys.stdout
    with tempfile.TemporaryDirectory(prefix="cli_fork.") as scratch:
        for number, line in enumerate(sys.stdin):
            request = json.loads(line)
            out_path, err_path = (str(Path(scratch) / f"{number}.{name}") for name in ("out", "err"))
            for path in (out_path, err_path):
                Path(path).write_bytes(b"")
            protocol.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request, out_path, err_path)
            code = _wait(pid, request["timeout"])
            answer = {"returncode": code, "stdout": Path(out_path).read_text(errors="replace"),
                      "stderr": Path(err_path).read_text(errors="replace")}
            protocol.write(json.dumps(answer) + "\n")
            protocol.flush()


class CliServer:
    """The pytest side: one server process, many commands."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, cwd=Path(__file__).resolve().parent.parent)

    def run(self, argv: list[str], cwd: Path, env: dict | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """`python -m initbench ARGV` in `cwd`, with the test environment of `conftest.run_cli`."""
        full_env = {**os.environ, "INITBENCH_CACHE": str(cwd / ".cache")}
        full_env.pop("HYDRA_FULL_ERROR", None)
        full_env.update(env or {})
        request = {"argv": [str(a) for a in argv], "cwd": str(cwd), "env": full_env, "timeout": timeout}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the CLI fork server died (exit status {self.process.wait()})")
        answer = json.loads(line)
        return subprocess.CompletedProcess(["initbench", *argv], answer["returncode"], answer["stdout"],
                                           answer["stderr"])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


if __name__ == "__main__":
    serve()
