from __future__ import annotations

from django.apps import AppConfig


class OfflineJudgeConfig(AppConfig):
    name = "offline_judge"
    verbose_name = "Offline judge"
