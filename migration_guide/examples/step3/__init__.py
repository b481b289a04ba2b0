"""Step 3: process_event is a Coda workflow; migrated stages run on Coda workers, legacy ones
still on Celery workers through the bridge; memoized results replace the processing store."""
