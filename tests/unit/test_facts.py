"""The memory-extraction prompt and the parser of what models really answer."""

from __future__ import annotations

import json

import pytest

from enclave.memory.facts import Operation, build_prompt, parse_operations

EXISTING = [(41, "The user lives in Beijing"), (57, "The user likes tea")]


def test_the_prompt_shows_numbers_not_ids_and_the_turn() -> None:
    turn = [{"role": "user", "content": "I moved to Shanghai last week."},
            {"role": "assistant", "content": "Welcome to Shanghai!"}]  # fmt: skip
    messages = build_prompt(turn, EXISTING, today="2026-03-01")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "UPDATE" in messages[0]["content"]
    assert "DELETE" in messages[0]["content"]
    body = messages[1]["content"]
    assert "1. The user lives in Beijing" in body
    assert "2. The user likes tea" in body
    assert "41" not in body
    assert "user: I moved to Shanghai last week." in body
    assert "Today is 2026-03-01." in body
    assert "(none)" in build_prompt(turn, [])[1]["content"]


def test_a_clean_answer_maps_numbers_back_to_ids() -> None:
    answer = json.dumps({"operations": [
        {"op": "UPDATE", "id": 1, "text": "The user lives in Shanghai"},
        {"op": "ADD", "text": "The user moved in March", "kind": "fact"},
        {"op": "ADD", "text": "Prefers  short\nanswers", "kind": "preference"},
        {"op": "DELETE", "id": 2},
        {"op": "NONE"},
    ]})  # fmt: skip
    assert parse_operations(answer, EXISTING) == [
        Operation("UPDATE", "The user lives in Shanghai", 41),
        Operation("ADD", "The user moved in March"),
        Operation("ADD", "Prefers short answers", kind="preference"),
        Operation("DELETE", "", 57),
    ]


@pytest.mark.parametrize(
    "answer",
    [
        'Sure! Here you go:\n```json\n{"operations": [{"op": "add", "text": "Has a cat"}]}\n```',
        '{"memory": [{"event": "ADD", "memory": "Has a cat"}]}',
        '[{"action": "Add", "content": "Has a cat"}] and that is all.',
        'Thinking... {not json} then {"op": "ADD", "text": "Has a cat"}',
        '{"Operations": [], "operations": [{"OP": "ADD", "TEXT": "Has a cat", "kind": "pet"}]}',
    ],
)
def test_what_small_models_write_is_understood(answer: str) -> None:
    assert parse_operations(answer, EXISTING) == [Operation("ADD", "Has a cat")]


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "I don't think anything should change.",
        '{"operations": "none"}',
        '{"operations": [{"op": "ADD"}, {"op": "ADD", "text": "   "}]}',
        '{"operations": [{"op": "UPDATE", "id": 3, "text": "x"}, {"op": "DELETE", "id": 0}]}',
        '{"operations": [{"op": "DELETE", "id": true}, {"op": "DELETE", "id": "41"}]}',
        '{"operations": [{"op": "MERGE", "id": 1}, "ADD", 7, null]}',
        '{"operations": [{"op": "ADD", "text": "unterminated',
    ],
)
def test_malformed_or_untrusted_output_changes_nothing(answer: str) -> None:
    assert parse_operations(answer, EXISTING) == []


def test_ids_as_strings_duplicates_and_long_texts() -> None:
    answer = json.dumps({"operations": [
        {"op": "DELETE", "id": "#2"},
        {"op": "UPDATE", "id": "2.", "text": "too late: already deleted"},
        {"op": "ADD", "text": "Same"}, {"op": "ADD", "text": "same"},
        {"op": "ADD", "text": "x" * 2000},
    ]})  # fmt: skip
    found = parse_operations(answer, EXISTING)
    assert found[:2] == [Operation("DELETE", "", 57), Operation("ADD", "Same")]
    assert len(found) == 3
    assert len(found[2].text) == 500
    many = json.dumps([{"op": "ADD", "text": f"fact {n}"} for n in range(100)])
    assert len(parse_operations(many, [])) == 20
