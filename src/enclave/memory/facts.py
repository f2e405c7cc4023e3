"""Long-term memory from conversations: the model decides what to remember.

As mem0 does, one call per conversation turn: the model sees the turn and the user's
existing memories that are related to it, and answers with JSON operations:

- ``ADD`` a new fact or preference;
- ``UPDATE`` an existing memory whose content changed (the user moved, changed taste);
- ``DELETE`` an existing memory the turn contradicts or the user asked to forget;
- ``NONE``: nothing worth keeping.

:func:`build_prompt` is pure; :func:`parse_operations` accepts what small models really
write (code fences, prose around the JSON, a bare list, other key names, ids as strings)
and drops what it cannot trust (an id that was not offered, an empty text) rather than
failing the turn. Existing memories are shown under small numbers (1, 2, ...), not their
database ids, so a model cannot touch a memory it was not shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Op = Literal["ADD", "UPDATE", "DELETE", "NONE"]
OPS: tuple[Op, ...] = ("ADD", "UPDATE", "DELETE", "NONE")
KINDS = ("fact", "preference")
MAX_TEXT = 500  # characters of one memory
MAX_OPERATIONS = 20
MAX_TURN_CHARS = 8000

SYSTEM = """You maintain the long-term memory of an assistant about one user.
Read the conversation turn and the user's existing memories, then decide what to store.
Remember only durable facts and preferences about the user (name, role, projects, tools,
language, likes and dislikes, decisions, constraints). Do not remember questions, small
talk, the assistant's own statements, secrets such as passwords or keys, or anything
that only matters for this one answer.

Operations:
- ADD: a new fact or preference, written as one short sentence in the user's language.
- UPDATE: an existing memory (by its number) whose content changed; give the new text.
- DELETE: an existing memory (by its number) that the turn shows to be wrong or
  outdated, or that the user asked to forget.
- NONE: nothing to change.

Answer with JSON only, no prose, in exactly this form:
{"operations": [{"op": "ADD", "text": "...", "kind": "fact"},
                {"op": "UPDATE", "id": 2, "text": "..."},
                {"op": "DELETE", "id": 1}]}
kind is "fact" or "preference". If nothing should change: {"operations": []}"""


@dataclass(frozen=True)
class Operation:
    op: Op
    text: str = ""
    id: int | None = None  # the database id of the memory an UPDATE or DELETE is about
    kind: str = "fact"


def build_prompt(
    turn: Sequence[Mapping[str, str]],
    existing: Sequence[tuple[int, str]],
    *,
    today: str | None = None,
) -> list[dict[str, str]]:
    """The chat messages asking the model for operations on ``existing`` (id, text)."""
    shown = "\n".join(f"{n}. {text}" for n, (_id, text) in enumerate(existing, 1)) or "(none)"
    lines = [f"{m.get('role', 'user')}: {m.get('content', '')}" for m in turn]
    conversation = "\n".join(lines)[-MAX_TURN_CHARS:]
    dated = f"Today is {today}.\n\n" if today else ""
    user = (
        f"{dated}Existing memories:\n{shown}\n\nConversation turn:\n{conversation}\n\n"
        "Answer with the JSON operations."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def parse_operations(answer: str, existing: Sequence[tuple[int, str]]) -> list[Operation]:
    """Valid operations in ``answer``; numbers map back to ``existing``'s ids."""
    items = _items(_json(answer))
    numbers = {n: memory_id for n, (memory_id, _text) in enumerate(existing, 1)}
    found: list[Operation] = []
    for item in items[: MAX_OPERATIONS * 2]:
        operation = _operation(item, numbers)
        if operation is not None and operation not in found:
            found.append(operation)
    return _consistent(found)[:MAX_OPERATIONS]


def _json(answer: str) -> Any:
    """The first JSON value in ``answer``: fenced, bare, or inside prose."""
    text = answer.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char in "{[":
            try:
                return decoder.raw_decode(text, start)[0]
            except ValueError:
                continue
    return None


def _items(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if not isinstance(value, dict):
        return []
    for key in ("operations", "memory", "memories", "actions", "ops"):
        if isinstance(value.get(key), list):
            return list(value[key])
    return [value] if _field(value, "op", "event", "action", "type") else []


def _operation(item: Any, numbers: dict[int, int]) -> Operation | None:
    if not isinstance(item, dict):
        return None
    op = str(_field(item, "op", "event", "action", "type") or "").strip().upper()
    text = " ".join(str(_field(item, "text", "memory", "content", "fact") or "").split())
    kind = str(item.get("kind") or "fact").lower()
    kind = kind if kind in KINDS else "fact"
    target = numbers.get(_number(_field(item, "id", "number", "memory_id")) or 0)
    if op == "ADD" and text:
        return Operation("ADD", text[:MAX_TEXT], None, kind)
    if op == "UPDATE" and text and target is not None:
        return Operation("UPDATE", text[:MAX_TEXT], target, kind)
    if op == "DELETE" and target is not None:
        return Operation("DELETE", "", target, kind)
    return None  # NONE, unknown operations, missing text, an id that was not offered


def _field(item: dict[str, Any], *names: str) -> Any:
    lowered = {str(key).lower(): value for key, value in item.items()}
    for name in names:
        if lowered.get(name) not in (None, ""):
            return lowered[name]
    return None


def _number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*#?(\d+)\.?\s*", str(value)) if value is not None else None
    return int(match.group(1)) if match else None


def _consistent(operations: list[Operation]) -> list[Operation]:
    """One change per existing memory (the first), and no ADD repeating another's text."""
    touched: set[int] = set()
    texts: set[str] = set()
    kept: list[Operation] = []
    for operation in operations:
        if operation.id is not None:
            if operation.id in touched:
                continue
            touched.add(operation.id)
        if operation.op == "ADD" and operation.text.casefold() in texts:
            continue
        texts.add(operation.text.casefold())
        kept.append(operation)
    return kept
