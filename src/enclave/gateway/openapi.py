"""Write the OpenAPI document of ``/v1`` and ``/api``: ``python -m enclave.gateway.openapi``.

``[PATH]`` defaults to ``docs/openapi.json``; a test fails when the committed file is not
current (CI runs it). The gateway serves no ``/openapi.json``: ``app.openapi()`` builds
the same document in the process (:func:`enclave.gateway.apidoc.document`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path("docs/openapi.json")


def render(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def build() -> dict[str, Any]:
    """The document of the app as ``serve`` builds it, without starting anything."""
    from enclave.config import Settings
    from enclave.gateway.app import create_app

    settings = Settings(engine={"enabled": False, "embeddings": False, "ocr": False})
    return create_app(settings).openapi()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(build()), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
