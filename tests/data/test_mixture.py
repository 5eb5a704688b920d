from collections import Counter

import pytest

from phaserl.data.mixture import Mixture, derive_seed
from phaserl.data.schema import Example


def _ds(name, n):
    return [Example(id=f"{name}-{i}", question=f"q{i}", answer="1") for i in range(n)]


def test_resume_from_state_draws_the_same_batches():
    def make():
        return Mixture([("a", _ds("a", 7), 1.0), ("b", _ds("b", 5), 3.0)], seed=3, stage=1)

    full = make()
    batches = [[e.id for e in full.next_batch(4)] for _ in range(10)]
    part = make()
    for _ in range(4):
        part.next_batch(4)
    state = part.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert [[e.id for e in resumed.next_batch(4)] for _ in range(6)] == batches[4:]


def test_epochs_cover_every_example_once_and_weights_hold():
    m = Mixture([("a", _ds("a", 10), 1.0)], seed=0)
    first = [e.id for e in m.next_batch(10)]
    assert sorted(first) == sorted(f"a-{i}" for i in range(10))  # one epoch = a permutation
    second = [e.id for e in m.next_batch(10)]
    assert sorted(second) == sorted(first) and second != first  # a new permutation next epoch
    mix = Mixture([("a", _ds("a", 50), 1.0), ("b", _ds("b", 50), 3.0)], seed=0)
    counts = Counter(e.id[0] for e in mix.next_batch(4000))
    assert 0.70 < counts["b"] / 4000 < 0.80


def test_seed_and_stage_change_the_order_and_bad_input_is_refused():
    a = [e.id for e in Mixture([("a", _ds("a", 20), 1.0)], seed=0, stage=0).next_batch(20)]
    b = [e.id for e in Mixture([("a", _ds("a", 20), 1.0)], seed=0, stage=1).next_batch(20)]
    assert a != b
    assert derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(2, 1)
    with pytest.raises(ValueError, match="empty"):
        Mixture([("a", [], 1.0)], seed=0)
    m = Mixture([("a", _ds("a", 3), 1.0)], seed=0)
    with pytest.raises(ValueError, match="no position"):
        m.load_state_dict({"draws": 0, "position": {"zzz": 1}})
