"""Step 1: the same pipeline with every task wrapped by coda.compat.task — nothing changes."""
