"""gunicorn's settings for Docket's web role (`manage.py start web` execs gunicorn with this file).

Everything that differs between deployments comes from the environment, like Docket's own settings.
Reference: https://docs.gunicorn.org/en/stable/settings.html
"""

from __future__ import annotations

import os
import re
from typing import Any

from gunicorn.glogging import Logger

bind = [f"{os.environ.get('DOCKET_BIND', '0.0.0.0')}:{os.environ.get('DOCKET_PORT', '8000')}"]

# Threads, not more processes: the live page polls every 2 s per open tab, and each request is short
# and mostly waits on the database. WEB_CONCURRENCY is the name most platforms set for processes.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
threads = int(os.environ.get("DOCKET_WEB_THREADS") or 8)
# Uploads of large datasets stream in through one request; exports stream out through one.
timeout = int(os.environ.get("DOCKET_WEB_TIMEOUT") or 120)
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then, staggered, so no slow leak ever matters.
max_requests = 5000
max_requests_jitter = 500

# Workers' heartbeat files: on a container's overlay filesystem a write can stall; /dev/shm is memory.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# Docket needs no runtime control socket, and several servers on one host must not share one path.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("DOCKET_LOG_LEVEL", "info").lower()
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'

# A share link's token is the key to a run: it never goes to a log, not even in a path.
SHARE_TOKEN = re.compile(r"/s/[^/?#\s]+")


class DocketLogger(Logger):
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "f", "{raw_uri}e", "{path_info}e"):
            if isinstance(atoms.get(key), str):
                atoms[key] = SHARE_TOKEN.sub("/s/<token>", atoms[key])
        return atoms


logger_class = DocketLogger
