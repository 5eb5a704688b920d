"""Weighted, seeded mixtures of datasets with a resumable cursor.

Each dataset is read as a stream of epochs, each epoch a permutation seeded by (seed, stage, dataset, epoch).
Which dataset fills each slot of a batch is drawn from an RNG seeded by (seed, stage, draw count). The whole
state is a few integers, saved in every checkpoint, so a resumed run draws exactly the batches it would have.
"""

from __future__ import annotations

import hashlib
import random

from phaserl.data.schema import Example


def derive_seed(*parts) -> int:
    """A stable 63-bit seed from any parts (Python's hash() is salted per process, so not that)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Mixture:
    def __init__(self, datasets: list[tuple[str, list[Example], float]], seed: int, stage: int = 0):
        if not datasets:
            raise ValueError("a mixture needs at least one dataset")
        for name, examples, weight in datasets:
            if not examples:
                raise ValueError(f"dataset {name!r} is empty")
            if weight < 0:
                raise ValueError(f"dataset {name!r}: weight must be >= 0")
        if sum(w for _, _, w in datasets) <= 0:
            raise ValueError("mixture weights sum to 0")
        self.names = [n for n, _, _ in datasets]
        self.examples = [e for _, e, _ in datasets]
        self.weights = [w for _, _, w in datasets]
        self.seed, self.stage = seed, stage
        self.draws = 0  # examples drawn so far
        self.position = [0] * len(datasets)  # examples consumed from each dataset's stream
        self._perm_cache: dict[int, tuple[int, list[int]]] = {}  # dataset -> (epoch, permutation)

    def __len__(self) -> int:
        return sum(len(e) for e in self.examples)

    def _perm(self, d: int, epoch: int) -> list[int]:
        cached = self._perm_cache.get(d)
        if cached is None or cached[0] != epoch:
            order = list(range(len(self.examples[d])))
            random.Random(derive_seed(self.seed, self.stage, self.names[d], epoch)).shuffle(order)
            cached = self._perm_cache[d] = (epoch, order)
        return cached[1]

    def _choose_dataset(self) -> int:
        if len(self.names) == 1:
            return 0
        rng = random.Random(derive_seed(self.seed, self.stage, "slot", self.draws))
        return rng.choices(range(len(self.names)), weights=self.weights)[0]

    def next(self) -> Example:
        d = self._choose_dataset()
        size = len(self.examples[d])
        epoch, idx = divmod(self.position[d], size)
        self.position[d] += 1
        self.draws += 1
        return self.examples[d][self._perm(d, epoch)[idx]]

    def next_batch(self, B: int) -> list[Example]:
        return [self.next() for _ in range(B)]

    def state_dict(self) -> dict:
        return {"draws": self.draws, "position": dict(zip(self.names, self.position))}

    def load_state_dict(self, state: dict) -> None:
        self.draws = int(state["draws"])
        pos = state["position"]
        missing = set(self.names) - set(pos)
        if missing:
            raise ValueError(f"checkpoint's data cursor has no position for datasets {sorted(missing)}")
        self.position = [int(pos[n]) for n in self.names]
