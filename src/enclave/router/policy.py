"""Which member takes a request: pure functions, no I/O, randomness passed in.

Least outstanding requests, weighted, by the power of two choices: sample two members
(weighted by ``weight``), send to the one with less work per unit of weight. With an
affinity key (a conversation or a prompt prefix) the member is chosen by rendezvous
hashing, so the same key keeps landing where its prefix is cached, unless that member
is loaded well above the average (bounded load), when the key falls back to balancing.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from typing import Protocol, TypeVar

LOAD_BOUND = 1.25  # an affine member may carry this much over the average load


class Candidate(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> float: ...

    @property
    def outstanding(self) -> int: ...


C = TypeVar("C", bound=Candidate)


def load(member: C) -> float:
    return (member.outstanding + 1) / member.weight


def two_choices(candidates: Sequence[C], rng: random.Random) -> C:
    if len(candidates) == 1:
        return candidates[0]
    weights = [m.weight for m in candidates]
    first = rng.choices(range(len(candidates)), weights)[0]
    rest = [i for i in range(len(candidates)) if i != first]
    second = rng.choices(rest, [weights[i] for i in rest])[0]
    a, b = candidates[first], candidates[second]
    return b if load(b) < load(a) else a


def rendezvous(candidates: Sequence[C], key: str) -> C:
    """Highest random weight: the same key picks the same member while it is a candidate."""

    def score(member: C) -> float:
        digest = hashlib.blake2b(f"{key}\0{member.name}".encode(), digest_size=8).digest()
        unit = (int.from_bytes(digest, "big") + 1) / 2**64  # in (0, 1]
        return -member.weight / math.log(unit) if unit < 1 else math.inf

    return max(candidates, key=score)


def choose(candidates: Sequence[C], rng: random.Random, key: str | None = None) -> C:
    if not candidates:
        raise ValueError("no candidates")
    if key is None or len(candidates) == 1:
        return two_choices(candidates, rng)
    preferred = rendezvous(candidates, key)
    average = sum(m.outstanding for m in candidates) / len(candidates)
    if preferred.outstanding <= max(LOAD_BOUND * average, average + 1):
        return preferred
    return two_choices(candidates, rng)
