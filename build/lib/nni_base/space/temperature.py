"""Annealing schedule for the Gumbel-softmax temperature."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TemperatureSchedule:
    """Temperature of the Gumbel-softmax relaxation as a function of the training step.

    The temperature goes from ``start`` at step 0 to ``end`` at ``total_steps`` and stays there.
    ``exponential`` decays geometrically (SNAS, GDAS), ``linear`` as NNI's ``GumbelDARTS`` does.

    Examples
    --------
    >>> schedule = TemperatureSchedule(start=5.0, end=0.5, kind='exponential')
    >>> round(schedule(50, total_steps=101), 3)
    1.581
    """

    start: float = 5.0
    end: float = 0.5
    kind: Literal['exponential', 'linear', 'constant'] = 'exponential'

    def __post_init__(self):
        if not (self.start > 0 and self.end > 0):
            raise ValueError(f'Gumbel temperatures must be positive, got start={self.start}, end={self.end}.')
        if self.kind not in ('exponential', 'linear', 'constant'):
            raise ValueError(f"Unknown temperature schedule {self.kind!r}: use 'exponential', 'linear' or 'constant'.")

    def __call__(self, step: int, total_steps: int) -> float:
        if self.kind == 'constant' or total_steps <= 1:
            return self.start
        frac = min(max(step / (total_steps - 1), 0.0), 1.0)
        if self.kind == 'linear':
            return self.start + (self.end - self.start) * frac
        return math.exp(math.log(self.start) + (math.log(self.end) - math.log(self.start)) * frac)
