"""Step 4: the Redis plumbing and the last Celery queue are gone — one Coda workflow per event."""
