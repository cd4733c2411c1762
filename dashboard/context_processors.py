from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def docket(request: HttpRequest) -> dict[str, Any]:
    return {
        "judge_api_source": settings.JUDGE_API_SOURCE,
        "judge_api_is_offline": settings.JUDGE_API_SOURCE == "offline",
    }
