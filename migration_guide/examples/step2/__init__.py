"""Step 2 changes no code: it runs step 1's package differently (see migration_guide/2-takeover.md).

Deploy step 1 with a ``coda supervisor`` consuming ``events.save_event`` in place of the Celery
worker that did, or keep the Celery workers and move a share of ``save_event.delay()`` calls to
Coda with the rollout switch. ``tests/migration_guide/test_takeover_step.py`` runs both.
"""
