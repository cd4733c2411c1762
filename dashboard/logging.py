"""Log filters: share-link tokens never reach a log line."""

from __future__ import annotations

import logging
import re

SHARE_PATH = re.compile(r"/s/[A-Za-z0-9_-]{8,}")


class MaskShareTokens(logging.Filter):
    """Replace `/s/<token>` in any message (request logs print full paths, a token is a password)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/s/" in message:
            record.msg = SHARE_PATH.sub("/s/<token>", message)
            record.args = None
        return True
