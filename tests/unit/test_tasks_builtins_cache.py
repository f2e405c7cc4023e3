"""The built-in templates are parsed once per process and handed out as copies."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from enclave.tasks import service


def test_builtins_are_parsed_once_and_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    service.builtin_templates()  # parsed (at most) here
    calls = []
    real = yaml.safe_load

    def counted(text: Any) -> Any:
        calls.append(1)
        return real(text)

    monkeypatch.setattr(yaml, "safe_load", counted)
    first = service.builtin_templates()
    first["log-digest"]["steps"].clear()
    again = service.builtin_templates()
    assert again["log-digest"]["steps"]
    assert service.builtin_template("search") == again["search"]
    assert "kb-ingest" in service.builtin_names()
    assert calls == []
