"""Step 4, all Coda: the same acceptance test against a real supervisor, and the rerun that
skips the steps already done."""

from __future__ import annotations

from coda.testing import CeleryWorkerProcess, SupervisorProcess
from migration_guide.examples import domain, events
from migration_guide.examples.step4 import workflows
from tests.migration_guide.conftest import Pipeline, assert_acceptance

STEP4 = "migration_guide.examples.step4"


def test_step4_acceptance(coda_pipeline: Pipeline, coda_supervisor_factory) -> None:  # noqa: ANN001
    supervisor: SupervisorProcess = coda_supervisor_factory([f"{STEP4}.workflows"], env=coda_pipeline.env)
    coda_pipeline.feed(f"{STEP4}.consumer", CODA_URL=supervisor.address)
    coda_pipeline.wait_settled(duplicate_runs=1)  # the duplicate finds its run by id: nothing runs twice
    assert_acceptance(domain.saved_events())
    assert domain.count_calls("preprocess", "ev-python") == 1


def test_step4_failure_after_symbolicate_reruns_without_symbolicating_again(coda_pipeline: Pipeline, coda_supervisor_factory) -> None:  # noqa: ANN001
    supervisor: SupervisorProcess = coda_supervisor_factory([f"{STEP4}.workflows"], env=coda_pipeline.env)
    event = {"event_id": "ev-late", "platform": "native", "message": "boom", "received": 5.0,
             "frames": [{"addr": "0x1"}], "fail_processing_once": True}
    with supervisor.sync_client() as client:
        run = client.start(workflows.ingest_event, {"event": event, "event_id": "ev-late", "project_id": events.PROJECT_ID})
        assert run.result(timeout=60) == {"event_id": "ev-late", "saved": True}
        status = run.status()
    assert status.attempt == 2  # processing failed on attempt 1; the workflow reran by itself
    calls = {stage: domain.count_calls(stage, "ev-late") for stage in ("preprocess", "symbolicate", "process", "save")}
    assert calls == {"preprocess": 1, "symbolicate": 1, "process": 2, "save": 1}
    assert status.tasks["memo_hits"] == 2  # preprocess and symbolicate came from the memo


STEP3 = "migration_guide.examples.step3"
LEGACY_QUEUES = ["events.symbolicate_event", "events.save_event"]


def _step3(pipeline: Pipeline, coda_supervisor_factory) -> SupervisorProcess:  # noqa: ANN001
    return coda_supervisor_factory([f"{STEP3}.workflows"], env=pipeline.env,
                                   args=["--celery-app", f"{STEP3}.celery_app:app"])


def test_step3_acceptance_mixed_coda_and_celery_workers(pipeline: Pipeline, coda_supervisor_factory) -> None:  # noqa: ANN001
    queues = [pipeline.env["PIPELINE_QUEUE_PREFIX"] + q for q in LEGACY_QUEUES]
    with CeleryWorkerProcess(f"{STEP3}.celery_app", queues, concurrency=2, env=pipeline.env, args=["-I", f"{STEP3}.legacy"]):
        supervisor = _step3(pipeline, coda_supervisor_factory)
        pipeline.feed(f"{STEP3}.consumer", CODA_URL=supervisor.address)
        pipeline.wait_settled(duplicate_runs=1)
    assert_acceptance(domain.saved_events())


def test_step3_failure_after_legacy_symbolicate_reruns_without_symbolicating_again(pipeline: Pipeline, coda_supervisor_factory) -> None:  # noqa: ANN001
    queues = [pipeline.env["PIPELINE_QUEUE_PREFIX"] + q for q in LEGACY_QUEUES]
    event = {"event_id": "ev-late", "platform": "native", "message": "boom", "received": 5.0,
             "frames": [{"addr": "0x1"}], "fail_processing_once": True}
    with CeleryWorkerProcess(f"{STEP3}.celery_app", queues, concurrency=2, env=pipeline.env, args=["-I", f"{STEP3}.legacy"]):
        supervisor = _step3(pipeline, coda_supervisor_factory)
        client = supervisor.sync_client()
        run = client.start("pipeline.ingest_event", {"event": event, "event_id": "ev-late", "project_id": events.PROJECT_ID})
        assert run.result(timeout=60) == {"event_id": "ev-late", "saved": True}
        assert run.status().attempt == 2
    calls = {stage: domain.count_calls(stage, "ev-late") for stage in ("preprocess", "symbolicate", "process", "save")}
    assert calls == {"preprocess": 1, "symbolicate": 1, "process": 2, "save": 1}
