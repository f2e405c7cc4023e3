"""Built-in task templates (read-only definitions): ``builtin()`` gives them by name.

(On this branch only F's ``kb-ingest``; the merger joins C's templates here.)
"""

from __future__ import annotations

from typing import Any

from enclave.tasks.templates.kb_ingest import KB_INGEST_TASK


def builtin() -> dict[str, dict[str, Any]]:
    """The built-in templates' raw definitions, by name."""
    return {KB_INGEST_TASK["name"]: KB_INGEST_TASK}
