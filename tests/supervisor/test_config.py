"""Supervisor settings: defaults, the checks that name the flag, and CLI > environment > defaults."""

from __future__ import annotations

import pytest

from coda.address import DEFAULT_ADDRESS
from coda.errors import CodaError
from coda.supervisor.config import SupervisorConfig


def test_defaults() -> None:
    config = SupervisorConfig()
    assert (config.workers, config.concurrency, config.listen, config.grace, config.max_runs) == (2, 1, DEFAULT_ADDRESS, 30.0, 2000)
    assert config.queues == () and config.celery_app is None and config.token is None


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("workers", 0, r"--workers \(CODA_WORKERS\) must be >= 1, got 0"),
        ("concurrency", 0, r"--concurrency \(CODA_CONCURRENCY\) must be >= 1"),
        ("grace", -1.0, r"--grace \(CODA_GRACE\) must be >= 0"),
        ("retention", -1.0, r"--retention \(CODA_RETENTION\) must be >= 0"),
        ("max_runs", 0, r"--max-runs \(CODA_MAX_RUNS\) must be >= 1"),
        ("max_frame", 10, "must be >= 1024, got 10"),
        ("bridge_pickup_timeout", 0.0, r"--bridge-pickup-timeout \(CODA_BRIDGE_PICKUP_TIMEOUT\) must be > 0"),
        ("listen", "nowhere", "--listen: address 'nowhere' is not host:port"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(field: str, value: object, named: str) -> None:
    with pytest.raises(CodaError, match=named):
        SupervisorConfig(**{field: value})


def test_environment_then_overrides() -> None:
    env = {"CODA_WORKERS": "5", "CODA_GRACE": "1.5", "CODA_QUEUES": "a,b,", "CODA_TOKEN": "s3", "CODA_URL": "127.0.0.1:9"}
    config = SupervisorConfig.from_env(env)
    assert (config.workers, config.grace, config.queues, config.token, config.listen) == (5, 1.5, ("a", "b"), "s3", "127.0.0.1:9")
    # The CLI's values win; None and () mean "not given".
    config = SupervisorConfig.from_env(env, workers=2, grace=None, queues=(), listen="127.0.0.1:0")
    assert (config.workers, config.grace, config.queues, config.listen) == (2, 1.5, ("a", "b"), "127.0.0.1:0")
    # CODA_LISTEN is the setting itself; CODA_URL (the clients' variable) only fills in for it.
    assert SupervisorConfig.from_env({"CODA_LISTEN": "127.0.0.1:1", "CODA_URL": "127.0.0.1:2"}).listen == "127.0.0.1:1"


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(CodaError, match=r"CODA_WORKERS='many' is not a valid int"):
        SupervisorConfig.from_env({"CODA_WORKERS": "many"})


def test_with_makes_a_changed_copy() -> None:
    config = SupervisorConfig()
    changed = config.with_(grace=0.0)
    assert changed.grace == 0.0 and config.grace == 30.0
