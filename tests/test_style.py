"""The house style CI enforces: ``ruff check`` and ``ruff format --check`` clean (``make lint`` runs the same)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ['nni_base', 'tests', 'examples', 'benchmarks', 'search_spaces', 'scripts']


@pytest.mark.parametrize('command', [['check'], ['format', '--check']], ids=['check', 'format'])
def test_ruff_is_clean(command):
    result = subprocess.run([sys.executable, '-m', 'ruff', *command, *PATHS], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f'ruff {" ".join(command)} found problems (run `make lint`):\n{result.stdout}'
