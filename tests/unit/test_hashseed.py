"""The cross-process determinism helper (hashseed.py) catches what a same-process
comparison cannot: an output in a set's iteration order."""

from __future__ import annotations

import pytest
from hashseed import assert_same_across_hash_seeds, canonical, outputs_across_hash_seeds, set_order_probe


def test_a_same_process_comparison_misses_set_order_and_the_helper_sees_it():
    assert set_order_probe() == set_order_probe()  # what the old determinism tests did: always true
    assert len(set(outputs_across_hash_seeds("hashseed", "set_order_probe"))) > 1
    with pytest.raises(AssertionError, match="depends on the hash seed"):
        assert_same_across_hash_seeds("hashseed", "set_order_probe")


def test_canonical_sorts_sets_and_keeps_list_order():
    assert canonical({"b", "a"}) == ["a", "b"]
    assert canonical(["b", "a"]) == ["b", "a"]
