"""The supervisor: pure state, the dispatcher that changes it, and the I/O edge around them."""

from coda.supervisor.config import SupervisorConfig
from coda.supervisor.dispatch import Dispatcher
from coda.supervisor.server import Supervisor, serve
from coda.supervisor.state import SupervisorState

__all__ = ["Dispatcher", "Supervisor", "SupervisorConfig", "SupervisorState", "serve"]
