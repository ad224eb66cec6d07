"""benchmarks.prior_budget's summary: the prior's value is paired by task (prior minus control on the same task), and
LOFO rows come only from runs that left that family out."""

from __future__ import annotations

import pytest

from benchmarks.prior_budget import ALL, summarise


def test_differences_are_paired_by_task_and_settings_kept_apart():
    runs = [
        {'left_out': 'shapes', 'rows': {'shapes': {'no_prior': [0.5, 0.7], '30': [0.6, 0.7], '100': [0.4, 0.9]}}},
        {'left_out': None, 'rows': {'shapes': {'no_prior': [0.2, 0.2], '30': [0.2, 0.2], '100': [0.3, 0.3]}}},
    ]
    summary = summarise(runs, [30, 100])
    lofo = summary['leave-one-family-out']['shapes']
    assert lofo['30'][0] == pytest.approx(0.05) and lofo['100'][0] == pytest.approx(0.05)
    assert lofo['100'][1] > lofo['30'][1]  # (-0.1, +0.2) spreads more than (+0.1, 0.0)
    assert lofo['no_prior'][0] == pytest.approx(0.6)
    assert summary[ALL]['shapes']['100'][0] == pytest.approx(0.1)
