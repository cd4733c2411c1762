"""Routes of the offline judge, mounted at /judge-api/ by dashboard/urls.py."""

from __future__ import annotations

from django.urls import URLPattern, path, re_path

from offline_judge import views

urlpatterns: list[URLPattern] = [
    path("v1/judges/", views.judges_list, name="judges-list"),
    # Before the judge routes, or "batch-executions" would be taken for a judge id.
    path("v1/judges/batch-executions/", views.batch_list, name="batch-list"),
    path("v1/judges/batch-executions/<str:batch_id>/", views.batch_detail, name="batch-detail"),
    path("v1/judges/<str:judge_id>/", views.judge_detail, name="judge-detail"),
    path("v1/judges/<str:judge_id>/execute/", views.judge_execute, name="judge-execute"),
    path("v1/judges/<str:judge_id>/batch-execute/", views.judge_batch_execute, name="judge-batch-execute"),
    path("v1/batch-executions/", views.batch_executions_create, name="batch-executions-create"),
    path("v1/execution-logs/", views.execution_logs_list, name="execution-logs-list"),
    # Before the detail route, or "set-tags" would be taken for a log id.
    path("v1/execution-logs/set-tags/", views.execution_logs_set_tags, name="execution-logs-set-tags"),
    path("v1/execution-logs/<str:log_id>/", views.execution_log_detail, name="execution-log-detail"),
    path("v1/evaluators/", views.evaluators_list, name="evaluators-list"),
    path("v1/evaluators/<str:evaluator_id>/", views.evaluator_detail, name="evaluator-detail"),
    path("_offline/stats/", views.offline_stats, name="offline-stats"),
    # Last: anything else is a JSON 404, never Django's HTML page or an APPEND_SLASH redirect.
    re_path(r"^(?P<path>.*)$", views.not_found, name="not-found"),
]
