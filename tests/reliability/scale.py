"""The size of a reliability run, from the environment.

``SBPS_RELIABILITY_SCALE`` is ``ci`` (the default: a few kills and a few hundred fuzz cases
per scenario, well under ten minutes on two cores) or ``full`` (20 kills per scenario,
10,000 fuzz cases each). ``SBPS_RELIABILITY_SEED`` fixes every random choice (kill points,
fault order, fuzz cases), so a run can be repeated exactly.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

DEFAULT_SEED = 1515


@dataclass(frozen=True)
class Scale:
    name: str
    seed: int
    kills: int
    fuzz_cases: int
    fault_rounds: int

    def rng(self, scenario: str) -> random.Random:
        """A generator of its own per scenario: adding a scenario changes no other's draws."""
        return random.Random(f"{self.seed}:{scenario}")


def from_env() -> Scale:
    name = os.environ.get("SBPS_RELIABILITY_SCALE", "ci").strip().lower() or "ci"
    raw_seed = os.environ.get("SBPS_RELIABILITY_SEED", "").strip()
    try:
        seed = int(raw_seed) if raw_seed else DEFAULT_SEED
    except ValueError:
        raise ValueError(f"SBPS_RELIABILITY_SEED: {raw_seed!r} is not an integer") from None
    if name == "full":
        return Scale("full", seed, kills=20, fuzz_cases=10_000, fault_rounds=10)
    if name == "ci":
        return Scale("ci", seed, kills=4, fuzz_cases=400, fault_rounds=2)
    raise ValueError(f"SBPS_RELIABILITY_SCALE: {name!r} is not ci or full")
