"""Deterministic, leak-free splits for datasets that ship without official ones.

Items are grouped (by identity or source video) and whole groups are assigned to splits, so a
fake and the real video it came from never straddle train and test. Groups are ordered by a
SHA-1 of ``salt:group`` and cut by rank in the requested proportions, which is deterministic for
a given set of groups and leaves no requested split empty when there are enough groups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

DEFAULT_FRACTIONS = {"train": 0.72, "val": 0.14, "test": 0.14}  # FF++'s official 720/140/140


def assign_splits(groups: Iterable[str], fractions: dict[str, float], salt: str) -> dict[str, str]:
    """Map each distinct group to a split name, in the proportions of ``fractions``."""
    uniq = sorted(set(groups), key=lambda g: (hashlib.sha1(f"{salt}:{g}".encode()).hexdigest(), g))
    names = [n for n, f in fractions.items() if f > 0]
    total = sum(fractions[n] for n in names)
    n = len(uniq)
    exact = [n * fractions[s] / total for s in names]
    counts = [int(x) for x in exact]
    order = sorted(range(len(names)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    if n >= len(names):  # every requested split gets at least one group
        for i in range(len(names)):
            if counts[i] == 0:
                donor = max(range(len(names)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] = 1
    out: dict[str, str] = {}
    pos = 0
    for name, count in zip(names, counts):
        for g in uniq[pos : pos + count]:
            out[g] = name
        pos += count
    return out


class UnionFind:
    """Connected components over ids (used to keep FF++ pairs together)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)
