"""The offline judge's CPU per item, against a floor measured in the same run.

    .venv/bin/python bench/judge_cpu.py [--items 100]

For each of the offline judge's judges, evaluates N distinct items of about 800 characters (request,
response, two contexts, expected output) and prints CPU milliseconds per 100 items, beside a floor: the
same texts lower-cased, split into words and intersected as sets (the least any overlap evaluator
does). Target: at most 100 ms of CPU per 100 items per judge (about 35 ms on a laptop); exits 1 when a
judge misses it. Was a timed assertion in tests/offline_judge, which failed on a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

import django  # noqa: E402

django.setup()

from offline_judge import text  # noqa: E402
from offline_judge.catalogue import JUDGES  # noqa: E402
from offline_judge.inputs import ItemInput  # noqa: E402
from offline_judge.services import Runner, evaluate  # noqa: E402

CONTEXTS = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, on the Seine.",
    "It was completed in 1889 as the entrance arch of the World's Fair.",
)
TARGET_MS_PER_100 = 100.0


def items(count: int) -> list[ItemInput]:
    paragraph = " ".join(CONTEXTS) * 5
    return [
        ItemInput(
            request=f"Where is the Eiffel Tower and when was it completed? ({index})",
            response=f"{paragraph} ({index})",
            contexts=[f"{paragraph} [{index}a]", f"{paragraph} [{index}b]"],
            expected_output=f"{paragraph} <{index}>",
        )
        for index in range(count)
    ]


def floor_ms(batch: list[ItemInput]) -> float:
    started = time.process_time()
    for item in batch:
        words = set(item.response.lower().split())
        for other in (*item.contexts, item.expected_output, item.request):
            words & set(other.lower().split())
    return (time.process_time() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100)
    args = parser.parse_args()
    batch = items(args.items)
    per_100 = 100 / args.items
    floor = floor_ms(batch) * per_100
    print(f"floor (split and intersect): {floor:.1f} ms of CPU per 100 items")
    missed = []
    for judge in JUDGES:
        text.content_terms.cache_clear()
        runner = Runner(judge=judge, evaluators=judge.evaluators)
        started = time.process_time()
        for item in batch:
            evaluate(runner, item)
        spent = (time.process_time() - started) * 1000 * per_100
        ratio = spent / floor if floor else float("inf")
        print(f"{judge.name:<32} {spent:7.1f} ms per 100 items  ({ratio:.1f}x the floor)")
        if spent > TARGET_MS_PER_100:
            missed.append(judge.name)
    if missed:
        print(f"over {TARGET_MS_PER_100:g} ms per 100 items: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
