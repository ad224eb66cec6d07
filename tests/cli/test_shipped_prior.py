"""``python -m nni_base.cli.shipped_prior``: a prior with its provenance and a card generated from it, snapshots at
the budgets of a meta-training curve, and refusals of families the database does not have."""

from __future__ import annotations

import pytest

from nni_base.cli.shipped_prior import card_path, main, meta_train_on_families, provenance_card
from nni_base.database.spec import DATABASE_SPECS
from nni_base.prior import load_prior

FAMILIES = DATABASE_SPECS[2].families


def test_the_command_writes_a_prior_with_its_provenance_and_the_card_from_it(tmp_path):
    out = tmp_path / 'lofo.pt'
    kept = FAMILIES[0]
    left_out = [f for f in FAMILIES if f != kept]
    made = main(['--output', str(out), '--meta-steps', '10', '--tasks-per-step', '1', '--leave-out', *left_out])
    prior = load_prior(out)
    assert prior['meta']['provenance'] == made
    assert made['families'] == [kept] and made['meta_steps'] == prior['meta']['steps'] == 10
    assert made['command'].endswith(f'--leave-out {" ".join(left_out)}')
    assert card_path(out).read_text() == provenance_card(made)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['lofo.md', 'lofo.pt']  # no staging folder left
    assert main(['--output', str(out), '--describe']) == made


def test_snapshots_hold_the_prior_of_their_meta_step_count(tmp_path):
    files = {10: tmp_path / 'p10.pt', 20: tmp_path / 'p20.pt'}
    meta_train_on_families(
        tmp_path / 'prior.pt', families=[FAMILIES[0]], meta_steps=20, tasks_per_step=1, snapshots=files
    )
    assert load_prior(files[10])['meta']['steps'] == 10
    assert load_prior(files[20])['meta']['steps'] == 20 == load_prior(tmp_path / 'prior.pt')['meta']['steps']
    first, last = load_prior(files[10])['alpha'], load_prior(files[20])['alpha']
    assert any(not (first[k] == last[k]).all() for k in first)  # ten more meta-steps moved alpha


def test_unknown_families_and_uneven_snapshots_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r'families must be some of'):
        meta_train_on_families(tmp_path / 'p.pt', families=['peaks'], meta_steps=10)
    with pytest.raises(ValueError, match='multiples of 10'):
        meta_train_on_families(tmp_path / 'p.pt', families=[FAMILIES[0]], meta_steps=20, snapshots={15: tmp_path / 'x'})
