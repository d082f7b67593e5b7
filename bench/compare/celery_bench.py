"""A and B on Celery 5 + Redis, prefork pool of 2; run by bench/compare/run.py in its venv.

    python celery_bench.py [--rounds N] [--tasks N] [--steps N] [--sequence N]

It starts its own `redis-server` (loopback, a free port, no persistence, a
temporary folder) as broker and result backend, and one worker
(`celery -A celery_app worker --pool=prefork --concurrency=2`). A task is a
chain of no-op steps (each gets the previous one's result); A sends the 50
chains at once. A workflow's time: from the first `apply_async` to the
result of every chain's last step. Both processes are stopped at the end.
The last line is `_shapes.measure`'s `result ...`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import celery
import redis
from _shapes import measure, parser

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check, what: str, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"celery_bench: {what} did not come up in {deadline_s:.0f}s")
        time.sleep(0.2)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


def main() -> None:
    args = parser(__doc__.split("\n")[0]).parse_args()
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    os.environ["NOETL_COMPARE_REDIS"] = url
    with tempfile.TemporaryDirectory() as folder, \
            Path(folder, "worker.log").open("w+") as log:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", folder],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        worker = None
        try:
            wait_for(lambda: redis.Redis(port=port).ping(), "redis-server")
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "celery_app", "worker",
                 "--pool=prefork", "--concurrency=2", "--loglevel=WARNING"],
                cwd=HERE, stdout=subprocess.DEVNULL, stderr=log)
            sys.path.insert(0, str(HERE))
            from celery_app import app, step

            try:
                wait_for(lambda: app.control.ping(timeout=1.0), "the celery worker")
            except SystemExit:
                log.seek(0)
                print(log.read()[-2000:], file=sys.stderr)
                raise

            def run(tasks: int, steps: int) -> float:
                start = time.perf_counter()
                results = [celery.chain(step.s(None), *(step.s() for _ in range(steps - 1)))
                           .apply_async() for _ in range(tasks)]
                for result in results:
                    result.get(timeout=600)
                return time.perf_counter() - start

            version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                     text=True).stdout.split()
            server_version = next((w[2:] for w in version if w.startswith("v=")), "?")
            measure(args, lambda: run(args.tasks, args.steps), lambda: run(1, args.sequence),
                    version=f"celery-{celery.__version__},redis-py-{redis.__version__},"
                            f"redis-server-{server_version}")
            app.close()
        finally:
            if worker is not None:
                stop(worker)
            stop(server)

if __name__ == "__main__":
    main()
