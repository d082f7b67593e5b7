"""The Celery app of celery_bench.py: one no-op task; the broker and backend from the env.

The worker is started as `python -m celery -A celery_app worker` with this
folder as its working directory; NOETL_COMPARE_REDIS is the Redis URL.
"""

from __future__ import annotations

import os

from celery import Celery

URL = os.environ["NOETL_COMPARE_REDIS"]
app = Celery("compare", broker=URL, backend=URL)
app.conf.broker_connection_retry_on_startup = True


@app.task
def step(previous: object) -> object:
    return previous
