"""The fast weight check (issue 13) decides exactly as the leaf-by-leaf one, and a shortened
stand-in for the schema still yields the real entry's counts in messages."""

from __future__ import annotations

import copy
import random
from typing import Any

import numpy as np
import pytest

from modelreg.rtneural.runtime import _exact_numeric, _numeric, _stub_rows, check_rtneural

# What a JSON file (or a caller's data) can hold where a number belongs.
ODD_LEAVES: list[Any] = [True, False, "1.5", "", None, {}, {"1": 2}, [], [1.0], [[1.0]], 10**400, -(10**400),
                         2**70, 2**64 - 1, np.float32(1.5), np.int8(3), np.bool_(True), float("nan"),
                         float("inf"), -0.0, 7, np.str_("2")]


def _grid(rng: random.Random, depth: int) -> Any:
    shape = [rng.randint(1, 4) for _ in range(depth)]

    def build(level: int) -> Any:
        if level == depth:
            return rng.choice([rng.uniform(-2, 2), rng.randint(-3, 3)])
        return [build(level + 1) for _ in range(shape[level])]

    return build(0)


def _corrupt(rng: random.Random, value: Any, depth: int) -> Any:
    """One seeded fault: an odd leaf, a ragged row, a number for a row, a row for a number, tuples."""
    value = copy.deepcopy(value)
    path = [rng.randrange(len(value))]
    node = value
    for _ in range(depth - 1):
        node = node[path[-1]]
        path.append(rng.randrange(len(node)))
    parent: Any = value
    for index in path[:-2]:
        parent = parent[index]
    fault = rng.randrange(5)
    if fault == 0:
        node[path[-1]] = rng.choice(ODD_LEAVES)
    elif fault == 1 and depth > 1:
        parent[path[-2]] = parent[path[-2]][:-1] or [1.0, 2.0]  # ragged (or longer) row
    elif fault == 2 and depth > 1:
        parent[path[-2]] = rng.choice([1.0, "row", None, True])
    elif fault == 3:
        node[path[-1]] = [node[path[-1]]]  # one level too deep
    else:
        value = tuple(value)
    return value


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_fast_path_decides_like_the_exact_one(depth: int) -> None:
    rng = random.Random(1300 + depth)
    accepted = rejected = 0
    for _ in range(600):
        value = _grid(rng, depth)
        if rng.random() < 0.8:
            value = _corrupt(rng, value, depth)
        for wanted in (depth - 1, depth, depth + 1):
            if wanted < 1:
                continue
            fast, exact = _numeric(value, wanted), _exact_numeric(value, wanted)
            assert _same(fast, exact), (value, wanted, fast, exact)
            accepted += fast is not None
            rejected += fast is None
    assert accepted > 100 and rejected > 100  # both outcomes were exercised


def test_a_boolean_among_numbers_is_not_read_as_one() -> None:
    # float64 conversion alone would quietly make 1.0 of it
    assert _numeric([[0.5, True], [0.25, 0.75]], 2) is None
    assert _numeric([0.5, np.bool_(False)], 1) is None
    assert _numeric([0.5, "0.25"], 1) is None
    assert _numeric([0.5, None], 1) is None


def test_shortened_stand_in_still_quotes_the_real_count() -> None:
    rows = _stub_rows() + 3  # longer than the stand-in the schema sees
    data = {"in_shape": [None, None, 2], "layers": [{
        "type": "gru", "activation": "tanh", "shape": [None, None, 1],
        "weights": [[[0.1, 0.2, 0.3]] * 2, [[0.1, 0.2, 0.3]], [[0.0, 0.0, 0.0]] * rows],
    }]}
    problems = check_rtneural(data)
    assert [(p.key, p.reason, p.found) for p in problems] == \
        [("layers[0].weights[2]", "wrong number of entries", f"{rows} entries")]
