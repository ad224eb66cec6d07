"""Reading a prior never runs code from the file, errors name the right fix, and a failed write keeps the old prior."""

from __future__ import annotations

import errno
import io
import pickle
from pathlib import Path

import pytest
import torch

from nni_base import CorruptPriorError, load_prior, save_prior
from nni_base.prior import PRIOR_FORMAT, PRIOR_VERSION


def _prior_like() -> dict:
    """Every entry load_prior checks for, so only the unpickler stands between the file and the caller."""
    return {
        'format': PRIOR_FORMAT,
        'version': PRIOR_VERSION,
        'space': {'class': 'x', 'signature': {}},
        'state_dict': {'w': torch.zeros(2)},
        'alpha': {'normal': torch.zeros(3, 2)},
        'config': {},
    }


class _Marker:
    """A custom class inside a valid torch.save archive: unpickling it runs ``__setstate__`` (it writes a file)."""

    def __init__(self, path: str):
        self.path = path

    def __setstate__(self, state):
        Path(state['path']).write_text('ran')
        self.__dict__.update(state)


class _Exec:
    """A raw pickle whose loading calls ``exec``; the payload writes to an absolute path."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (exec, (f'open({self.path!r}, "w").write("pwned")',))


def _assert_no_unsafe_advice(message: str) -> None:
    assert 'weights_only' not in message and 'add_safe_globals' not in message, message


@pytest.mark.filterwarnings('ignore:Detected pickle protocol')  # a hand-made pickle on purpose
@pytest.mark.parametrize('protocol', [2, pickle.HIGHEST_PROTOCOL])
def test_pickle_that_calls_exec_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / 'pwned'
    assert marker.is_absolute()
    path = tmp_path / 'evil.pt'
    path.write_bytes(pickle.dumps({**_prior_like(), 'meta': {'x': _Exec(str(marker))}}, protocol=protocol))
    with pytest.raises(CorruptPriorError, match='Refusing to read prior .*evil.pt') as info:
        load_prior(path)
    assert not marker.exists(), 'loading the prior ran the code in it'
    _assert_no_unsafe_advice(str(info.value))
    assert 'nothing in it was run' in str(info.value)


def test_torch_save_archive_holding_a_custom_class_is_refused(tmp_path):
    marker = tmp_path / 'ran'
    path = tmp_path / 'custom.pt'
    torch.save({**_prior_like(), 'meta': {'note': _Marker(str(marker))}}, path)
    with pytest.raises(CorruptPriorError, match=r'something other than tensors .*_Marker') as info:
        load_prior(path)
    assert not marker.exists()
    _assert_no_unsafe_advice(str(info.value))


def test_the_same_archive_without_the_class_loads(tmp_path):
    # The control of the test above: what is refused there is the class, not the archive or its entries.
    path = tmp_path / 'plain.pt'
    torch.save({**_prior_like(), 'meta': {'note': 'plain'}}, path)
    assert load_prior(path)['meta'] == {'note': 'plain'}


@pytest.mark.parametrize('content', [bytes(range(256)) * 8, b'', b'PK\x03\x04' + b'\x00' * 100])
def test_random_or_empty_bytes_are_a_clear_error_without_unsafe_advice(tmp_path, content):
    path = tmp_path / 'junk.pt'
    path.write_bytes(content)
    with pytest.raises(CorruptPriorError, match='junk.pt') as info:
        load_prior(path)
    _assert_no_unsafe_advice(str(info.value))
    assert 'meta-train again' in str(info.value).lower()


def test_truncated_prior_names_the_damage_and_the_fix(tmp_path):
    path = save_prior(_prior_like(), tmp_path / 'prior.pt')
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CorruptPriorError, match=r'Cannot read prior .*prior.pt.*damaged \(cut off') as info:
        load_prior(path)
    _assert_no_unsafe_advice(str(info.value))


def test_full_disk_during_the_write_is_a_clear_error_and_keeps_the_old_prior(tmp_path, monkeypatch):
    path = save_prior(_prior_like(), tmp_path / 'prior.pt')
    before = path.read_bytes()
    real_save = torch.save

    def save_until_the_disk_is_full(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[:100])  # part of the file reaches the disk, then the disk is full
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(torch, 'save', save_until_the_disk_is_full)
    newer = _prior_like()
    newer['alpha']['normal'] += 1.0
    with pytest.raises(
        OSError, match=r'Could not write the prior to .*prior.pt: No space left on device.*untouched'
    ) as info:
        save_prior(newer, path)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['prior.pt']  # no partial temporary file left behind
    monkeypatch.undo()
    assert torch.equal(load_prior(path)['alpha']['normal'], torch.zeros(3, 2))
