"""Testing Coda workflows. Importing this package needs no pytest; the pytest plugin is
:mod:`coda.testing.plugin` (registered as the ``coda`` pytest11 entry point, so installing Coda
enables it).

- :func:`run_workflow`: run one workflow to its end in this process (in-process supervisor
  and workers, no subprocess), from a plain ``def test_...``.
- :func:`in_process`: ``async with in_process() as client`` runs a supervisor and its workers
  inside the running event loop and yields a :class:`~coda.Client`.
- :class:`SupervisorProcess`: a real ``coda supervisor`` subprocess on a free loopback port;
  :class:`CeleryWorkerProcess`: a stock ``celery worker`` beside it (what the plugin's
  ``coda_supervisor`` fixture, the demo and the bench start).
"""

from coda.supervisor.launcher import CeleryWorkerProcess, SupervisorProcess
from coda.testing._in_process import in_process, run_workflow

__all__ = ["CeleryWorkerProcess", "SupervisorProcess", "in_process", "run_workflow"]
