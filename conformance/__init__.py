"""Celery's own test suites as the specification of "nothing changes": ``scripts/conformance.sh``.

Each suite of the installed Celery version's sdist runs twice in one invocation, stock and with
Coda swapped in (``swap``: ``coda.compat.install()``; ``supervisor``: a ``coda supervisor -Q
celery`` as the suite's worker), each run recorded per test (``record``), and ``compare`` reports
which tests that pass stock do not pass swapped.
"""
