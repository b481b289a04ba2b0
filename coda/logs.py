"""Log records as Coda writes them: a dotted event name as the message, the details as
structured fields (``logger.warning("coda.supervisor.rejected", extra={"peer": 3, ...})``).
:class:`EventFormatter` renders those fields after the message as ``key=value``, so a line
stays greppable by event name and readable by eye."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["EventFormatter", "setup_logging"]

# Every attribute a plain LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _render(value: Any) -> str:
    if isinstance(value, str) and value and not any(c.isspace() or c in "='\"" for c in value):
        return value
    return repr(value)


class EventFormatter(logging.Formatter):
    """A :class:`logging.Formatter` that appends a record's ``extra`` fields as ``key=value``."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = [f"{key}={_render(value)}" for key, value in vars(record).items() if key not in _STANDARD]
        return f"{line} {' '.join(fields)}" if fields else line


def setup_logging(level: str, process: str) -> None:
    """Log to stderr at ``level``, each line naming ``process`` (``coda-supervisor``, ...)."""
    handler = logging.StreamHandler()
    handler.setFormatter(EventFormatter(f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
