"""Step 0: the pipeline as it is today — plain Celery, a Redis processing store, .delay() hand-offs."""
