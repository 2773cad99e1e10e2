"""The native local stack: real services run as plain processes on 127.0.0.1.

``up(settings)``, ``down(settings)`` and ``status(settings)`` are what ``cdcapp stack`` runs; one
module per service (postgres, mariadb, clickhouse, kafka, connect, connectors) implements the small
``Service`` interface of ``base``.
"""

from cdcapp.stack.base import StackError
from cdcapp.stack.core import ServiceStatus, down, service, services, status, up

__all__ = ["ServiceStatus", "StackError", "down", "service", "services", "status", "up"]
