"""Step 2: step 1's code, deployed differently. First a supervisor takes over events.save_event
from the Celery workers; then the rollout switch moves save_event's .delay() calls to Coda, and
back. The acceptance test holds throughout."""

from __future__ import annotations

import pytest

from coda.testing import CeleryWorkerProcess
from migration_guide.examples import domain
from tests.migration_guide.conftest import Pipeline, assert_acceptance

STEP1 = "migration_guide.examples.step1"
CELERY_QUEUES = ["events.preprocess_event", "events.symbolicate_event", "events.process_event"]


def _queues(pipeline: Pipeline, names: list[str]) -> list[str]:
    return [pipeline.env["PIPELINE_QUEUE_PREFIX"] + q for q in names]


def test_supervisor_takes_over_the_save_queue(pipeline: Pipeline, coda_supervisor_factory) -> None:  # noqa: ANN001
    save_queue = _queues(pipeline, ["events.save_event"])[0]
    with CeleryWorkerProcess(f"{STEP1}.celery_app", _queues(pipeline, CELERY_QUEUES), concurrency=2,
                             env=pipeline.env, args=["-I", f"{STEP1}.tasks"]) as celery:
        coda_supervisor_factory([f"{STEP1}.tasks"], env=pipeline.env,
                                args=["--celery-app", f"{STEP1}.celery_app:app", "-Q", save_queue])
        pipeline.feed(f"{STEP1}.consumer")
        pipeline.wait_settled()
        celery_log = celery.log()
    assert_acceptance(domain.saved_events())
    # The Celery worker ran the other stages and never a save: those ran on the supervisor's workers.
    assert "pipeline.process_event[" in celery_log and "pipeline.save_event[" not in celery_log


@pytest.mark.parametrize(("share", "routed"), [("1", True), ("0", False)], ids=["all-to-coda", "and-back"])
def test_rollout_switch_moves_save_event_calls(pipeline: Pipeline, coda_supervisor_factory, share: str, routed: bool) -> None:  # noqa: ANN001
    supervisor = coda_supervisor_factory([f"{STEP1}.tasks"], env=pipeline.env)
    env = {**pipeline.env, "CODA_URL": supervisor.address, "CODA_COMPAT_ROLLOUT": f"pipeline.save_event={share}"}
    with CeleryWorkerProcess(f"{STEP1}.celery_app", _queues(pipeline, [*CELERY_QUEUES, "events.save_event"]),
                             concurrency=2, env=env, args=["-I", f"{STEP1}.tasks"]):
        pipeline.feed(f"{STEP1}.consumer")
        pipeline.wait_settled()
        runs = supervisor.sync_client().supervisor_status()["runs"]
    assert_acceptance(domain.saved_events())
    on_coda = sum(runs.values())
    if routed:
        assert on_coda >= 4  # every save_event.delay() became a coda.compat.run_task run
    else:
        assert on_coda == 0
