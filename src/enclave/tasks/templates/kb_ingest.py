"""The built-in ``kb-ingest`` task: what an upload to ``/api/kb`` runs (see
docs/tasks-ingest.md). Its one step is ``kb_ingest``; ``files`` are spooled uploads
(made by ``PUT /api/kb/{name}/documents/{filename}``), or ``root`` + ``glob`` name the
files of a ``tasks.file_roots`` folder."""

from __future__ import annotations

from typing import Any

KB_INGEST_TASK: dict[str, Any] = {
    "name": "kb-ingest",
    "description": "Ingest documents into a knowledge base: uploads waiting in the spool, "
    "or the files of a file root that a glob matches",
    "params": {
        "kb": {"type": "string", "description": "the knowledge base"},
        "files": {
            "type": "array", "default": [],
            "description": "spooled uploads, [{name, spool}] (what an upload submits)",
        },
        "root": {"type": "string", "default": "", "description": "a tasks.file_roots name"},
        "glob": {"type": "string", "default": "**/*", "description": "files under root"},
    },
    "steps": [{
        "id": "ingest", "kind": "kb_ingest", "title": "Ingest the documents",
        "kb": "{{ params.kb }}", "files": "{{ params.files | tojson }}",
        "root": "{{ params.root }}", "glob": "{{ params.glob }}",
    }],
}  # fmt: skip
