"""Coda against Celery, side by side: ``python -m bench [--quick] [--only NAMES] [--out DIR]``."""
