"""Start a run from the command line, optionally wait for it, and gate on its scores (the CI gate).

Exit status: 0; 1 when a mean score is under --fail-under; 2 for usage or validation errors, and
when the judge API refuses a request or still fails after evals.client.RETRY_BUDGET_SECONDS of waiting
(a throttle, a 5xx, a timeout is waited out, saying so on standard error), and with --wait when the run
stopped at its spending cap (it waits for someone to raise the cap: it will not finish by itself).
The summary opens with what the run cost (from the judge's execution logs).
The last line of standard output is always `run <id>: <status>` once a run exists.
"""

from __future__ import annotations

import math
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from evals.client import JudgeAPI, JudgeError, Patience
from evals.models import Dataset, Item, Judge, RemoteBatch, Run, Score
from evals.money import format_cost
from evals.pump import pump, pump_seen_within
from evals.selectors.costs import run_cost, run_waits_for_cap
from evals.services.judges import JudgeLookupError, judge_find, judge_refresh
from evals.services.retry import run_retry, run_retry_plan
from evals.services.run_options import RunError
from evals.services.runs import run_create
from evals.services.thresholds import run_thresholds_learn

PROGRESS_EVERY = 5.0
# How the summary says where each pass threshold came from (Run.threshold_for's sources).
THRESHOLD_LABELS = {"judge": "judge's", "default": "default", "pending": "pending", "override": "override"}
# With --wait and no worker alive for this long, the command does the work itself.
WORKER_GRACE = 10.0


class Command(BaseCommand):
    help = "Evaluate a dataset with a judge; with --wait, report per-evaluator scores and gate on them."
    # The system checks import every URL and API schema: a third of this command's own CPU on a
    # 10,000-item run (issue 16). `manage.py check` and the servers run them; a CI step need not.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", type=int, help="Dataset id (see the Datasets page).")
        parser.add_argument("--judge", help="Judge name, judge id, or Docket's judge number.")
        parser.add_argument(
            "--retry",
            type=int,
            metavar="RUN_ID",
            help="Instead of a new run: retry the failed and cancelled rows of this run (and its retries); "
            "while a retry of it is queued or running, report that one instead of starting another.",
        )
        parser.add_argument("--tag", action="append", default=[], help="A tag for the run (repeatable).")
        parser.add_argument("--name", default="", help="A name for the run.")
        parser.add_argument("--batch-size", type=int, default=100, help="Items per remote batch (1-100).")
        parser.add_argument(
            "--wait", action="store_true", help="Wait for the run to finish and summarise it."
        )
        parser.add_argument(
            "--fail-under", type=float, help="Exit 1 when a mean score is under this (needs --wait)."
        )
        parser.add_argument("--evaluator", help="With --fail-under: gate on this evaluator only.")
        parser.add_argument(
            "--threshold",
            type=float,
            help="Count passes at this score for every evaluator instead of the run's own thresholds "
            "(the judge's, learned with the run); the summary marks it as an override.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # One budget for every judge API call of this command: a CI job waits minutes, not hours.
        self.patience = Patience(say=self.stderr.write)
        if options["fail_under"] is not None and not options["wait"]:
            raise CommandError(
                "--fail-under needs --wait: scores exist only once the run has finished.", returncode=2
            )
        if options["evaluator"] and options["fail_under"] is None:
            raise CommandError("--evaluator goes with --fail-under.", returncode=2)
        if options["threshold"] is not None and not math.isfinite(options["threshold"]):
            raise CommandError("--threshold must be a finite number, such as 0.7.", returncode=2)
        run = self.retry(options) if options["retry"] is not None else self.start(options)
        if options["wait"]:
            run = self.wait(run)
        stuck = options["wait"] and run_waits_for_cap(run)
        if stuck:
            self.stdout.write(self.cost_line(run))
            self.stderr.write(
                f"{run.backoff_reason or 'Paused: budget reached'}. Run {run.pk} sends nothing more until its "
                f"cap is raised or removed (its page, or POST /api/v1/runs/{run.pk}/budget/)."
            )
        code = self.summarise(
            run,
            fail_under=options["fail_under"],
            evaluator=options["evaluator"],
            threshold=options["threshold"],
        )
        self.stdout.write(f"run {run.pk}: {run.status}")
        if stuck:
            code = 2
        if code:
            raise SystemExit(code)

    def start(self, options: dict[str, Any]) -> Run:
        if options["dataset"] is None or not options["judge"]:
            raise CommandError("Give --dataset and --judge (or --retry RUN_ID).", returncode=2)
        dataset = Dataset.objects.filter(pk=options["dataset"]).first()
        if dataset is None:
            raise CommandError(f"There is no dataset {options['dataset']}.", returncode=2)
        judge = self.find_judge(options["judge"])
        if not judge.version_id:
            # run_create pins the judge's current version but gives up on the first error; ask here,
            # where a throttled API can be waited out.
            try:
                with self.judge_api() as api:
                    judge = judge_refresh(judge=judge, api=api)
            except JudgeError as exc:
                raise CommandError(
                    f"Could not read the judge {judge.name}: {exc.message}", returncode=2
                ) from exc
        try:
            run = run_create(
                dataset=dataset,
                judge=judge,
                name=options["name"],
                tags=options["tag"],
                batch_size=options["batch_size"],
            )
        except RunError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        cap = f", spending at most {format_cost(run.max_cost)}" if run.max_cost is not None else ""
        self.stdout.write(
            f"run {run.pk} started: {run.total_count} items of dataset {dataset.pk} ({dataset.name}) "
            f"judged by {judge.name}, in {run.batches.count()} remote batches{cap}"
        )
        return run

    def retry(self, options: dict[str, Any]) -> Run:
        """The same service as the Retry button: idempotent while a retry of the run is under way."""
        if options["dataset"] is not None or options["judge"] or options["tag"] or options["name"]:
            raise CommandError(
                "--retry takes the dataset, judge, tags and name of the run it retries.", returncode=2
            )
        original = Run.objects.filter(pk=options["retry"]).first()
        if original is None:
            raise CommandError(f"There is no run {options['retry']}.", returncode=2)
        plan = run_retry_plan(run=original)
        if plan.excluded_count:
            self.stdout.write(
                f"{plan.excluded_count} rows are left out: a retry cannot fix them "
                "(the judge rejected the row, or it lacks an input the judge requires)"
            )
        try:
            run, created = run_retry(run=original)
        except RunError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        if created:
            self.stdout.write(
                f"run {run.pk} started: a retry of run {plan.root.pk}, {run.total_count} items will be sent "
                f"({plan.failed} failed, {plan.cancelled} cancelled), in {run.batches.count()} remote batches"
            )
        else:
            self.stdout.write(
                f"run {run.pk} is already retrying run {plan.root.pk} ({run.status}, "
                f"{run.done_count}/{run.total_count} done): nothing new was started"
            )
        return run

    def find_judge(self, wanted: str) -> Judge:
        try:
            with self.judge_api() as api:
                return judge_find(wanted, api=api)
        except JudgeError as exc:
            raise CommandError(f"Could not list the judges: {exc.message}", returncode=2) from exc
        except JudgeLookupError as exc:
            raise CommandError(str(exc), returncode=2) from exc

    def judge_api(self) -> JudgeAPI:
        return JudgeAPI.from_settings(patience=self.patience)

    def wait(self, run: Run) -> Run:
        started = time.monotonic()
        last_report = 0.0
        working_here = False
        while True:
            run.refresh_from_db()
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY or run.is_finished:
                self.stdout.write(self.progress_line(run))
                last_report = now
            # A run stopped by its spending cap waits for a person: waiting here would never end.
            if run.is_finished or run_waits_for_cap(run):
                return run
            # Once this process works the run it goes on doing so (its own slices release the slot too).
            if working_here or (now - started >= WORKER_GRACE and not pump_seen_within(WORKER_GRACE)):
                if not working_here:
                    self.stdout.write("no worker is running: working the run in this process")
                    working_here = True
                pump(budget_seconds=PROGRESS_EVERY)
                continue
            time.sleep(0.5)

    @staticmethod
    def progress_line(run: Run) -> str:
        line = f"run {run.pk}: {run.status}, {run.done_count}/{run.total_count} done"
        if run.failed_count:
            line += f", {run.failed_count} failed"
        if run.backoff_reason:
            line += f" ({run.backoff_reason})"
        return line

    def summarise(
        self, run: Run, *, fail_under: float | None, evaluator: str | None, threshold: float | None = None
    ) -> int:
        """Per evaluator n, mean, min and pass rate; --fail-under gates on the mean only.

        Passes count at the run's own thresholds (the judge's, learned once with the run), or at
        --threshold, which the table marks as an override.
        """
        names = list(run.evaluators)
        if evaluator and evaluator not in names:
            self.stderr.write(f'The run has no evaluator "{evaluator}". Evaluators: {", ".join(names)}.')
            return 2
        if not run.is_finished:
            return 0
        if run.thresholds_learned_at is None and run.completed_count:
            # No worker ran the learning task (this command worked the run itself): learn here.
            with self.judge_api() as api:
                run_thresholds_learn(run=run, api=api)
        # Before the table, whose last row stays just above the status line.
        self.stdout.write(self.cost_line(run))
        self.stdout.write(f"{'evaluator':<32} {'n':>7} {'mean':>6} {'min':>6} {'threshold':>16} {'pass':>5}")
        failing = []
        for name, mean, n in run.evaluator_means:
            summary = run.score_summary.get(name) or {}
            value, source = run.threshold_for(name, override=threshold)
            passed = (
                Score.objects.filter(run=run, evaluator_name=name)
                .filter(run.passing(name, override=threshold))
                .count()
            )
            share = f"{100 * passed / n:.0f}%" if n else "-"
            mean_text = f"{mean:.3f}" if mean is not None else "-"
            low = f"{summary['min']:.3f}" if n else "-"
            label = f"{value:g} {THRESHOLD_LABELS.get(source, source)}"
            self.stdout.write(f"{name[:32]:<32} {n:>7} {mean_text:>6} {low:>6} {label:>16} {share:>5}")
            gated = evaluator is None or name == evaluator
            if fail_under is not None and gated and (mean is None or mean < fail_under):
                failing.append(f"{name} mean {mean_text} is under {fail_under:g}")
        for line in failing:
            self.stderr.write(line)
        return 1 if failing else 0

    @staticmethod
    def cost_line(run: Run) -> str:
        """What the run cost, from the judge's execution logs (read per batch, after it finishes)."""
        cost = run_cost(run)
        # A batch's logs are read just after it finishes, so the last ones may still be on their way.
        unread = (
            RemoteBatch.objects.filter(
                run=run, logs_fetched_at__isnull=True, items__status=Item.Status.COMPLETED
            )
            .distinct()
            .count()
        )
        later = (
            f"; the logs of {unread} batch{'es' if unread != 1 else ''} are still to be read"
            if unread
            else ""
        )
        if not cost.known:
            return f"cost: not known yet{later}"
        return (
            f"cost: {cost.total_label} for {cost.items:,} item{'s' if cost.items != 1 else ''} "
            f"({cost.per_item_label} per item){later}"
        )
