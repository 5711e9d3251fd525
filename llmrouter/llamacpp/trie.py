"""Score every allowed route from the model's logits in as few forward passes as the names allow.

Each route is a token sequence (its name, then the end-of-answer token). The sequences form a trie;
the model's next-token distribution, restricted to a node's children and renormalised, gives the
probability of each branch. Only nodes where several routes still share a path need another
forward pass, so for most tables one pass (the prompt's own) scores every route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

MIN_EXPAND = 1e-3  # branches less likely than this are split evenly instead of evaluated


@dataclass
class TrieNode:
    children: dict[int, TrieNode] = field(default_factory=dict)
    routes: list[str] = field(default_factory=list)  # every route below this node

    @property
    def branching(self) -> bool:
        return len(self.routes) > 1


def build_trie(sequences: Mapping[str, Sequence[int]]) -> TrieNode:
    """A trie over the routes' token sequences; no sequence may be a prefix of another."""
    root = TrieNode()
    for route, seq in sequences.items():
        if not seq:
            raise ValueError(f"route {route!r} has an empty token sequence")
        node = root
        node.routes.append(route)
        for tok in seq:
            node = node.children.setdefault(tok, TrieNode())
            node.routes.append(route)
        if node.children:
            raise ValueError(f"route {route!r}'s tokens are a prefix of another route's")
    for route, seq in sequences.items():
        node = root
        for tok in seq:
            node = node.children[tok]
        if len(node.routes) > 1:
            raise ValueError(f"routes {node.routes} have the same token sequence")
    return root


def passes_needed(root: TrieNode) -> int:
    """Forward passes beyond the prompt's own needed to score every route (at most)."""
    return sum(1 for child in _walk(root) if child is not root and child.branching)


def _walk(node: TrieNode):
    yield node
    for c in node.children.values():
        yield from _walk(c)


def score_routes(
    root: TrieNode,
    logits_after: Callable[[Sequence[int]], np.ndarray],
    *,
    min_expand: float = MIN_EXPAND,
) -> dict[str, float]:
    """P(route) for every route, constrained to the allowed routes (sums to 1).

    `logits_after(path)` returns the logits row after the prompt plus `path` tokens; the empty
    path is the prompt itself.
    """
    scores: dict[str, float] = {r: 0.0 for r in root.routes}

    def visit(node: TrieNode, path: list[int], mass: float) -> None:
        toks = list(node.children)
        if len(toks) == 1:
            probs = np.ones(1)
        else:
            row = np.asarray(logits_after(path), dtype=np.float64)[toks]
            row = np.nan_to_num(row, nan=-1e30, posinf=1e30, neginf=-1e30)
            row -= row.max()
            probs = np.exp(row)
            probs /= probs.sum()
        for tok, p in zip(toks, probs):
            child, m = node.children[tok], mass * float(p)
            if not child.branching:
                scores[child.routes[0]] += m
            elif m < min_expand:
                for r in child.routes:
                    scores[r] += m / len(child.routes)
            else:
                visit(child, path + [tok], m)

    visit(root, [], 1.0)
    total = sum(scores.values()) or 1.0
    return {r: s / total for r, s in scores.items()}
