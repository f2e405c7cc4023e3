"""Every table, gathered: importing this puts all table modules on ``Base.metadata``.

Migrations (Alembic's env and autogenerate) and whatever needs the whole schema
(``create_all`` in tests, the unmanaged-name filter) read :data:`metadata` from here;
code that uses a few tables imports their own module.
"""

from __future__ import annotations

from enclave.store import (
    models,
    models_assistants,
    models_knowledge,
    models_memory,
    models_sessions,
    models_tasks,
)
from enclave.store.base import Base

metadata = Base.metadata

__all__ = [
    "Base",
    "metadata",
    "models",
    "models_assistants",
    "models_knowledge",
    "models_memory",
    "models_sessions",
    "models_tasks",
]
