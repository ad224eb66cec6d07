"""The README and the docs site as a user meets them: the site builds without a warning, every Python block runs,
every command a shell block names exists, every picture is there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / 'README.md', *sorted((REPO / 'docs').rglob('*.md'))]
FENCE = re.compile(r'^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$', re.MULTILINE | re.DOTALL)
# Every fence says what it is: python runs, bash/yaml/json are checked or shown, text is shown output.
LANGUAGES = {'python', 'bash', 'text', 'yaml', 'json'}
# Python blocks of one page run in order in one interpreter, as a reader pasting them would.
RUNNER = """
import json, sys, traceback
blocks = json.load(open(sys.argv[1]))
namespace = {'__name__': '__main__'}
for i, code in enumerate(blocks, 1):
    try:
        exec(compile(code, f'<block {i}>', 'exec'), namespace)
    except BaseException:
        traceback.print_exc()
        sys.exit(f'python block {i} of {len(blocks)} failed')
"""


def _name(page: Path) -> str:
    return str(page.relative_to(REPO))


def _blocks(page: Path, language: str) -> list[str]:
    return [code for lang, code in FENCE.findall(page.read_text()) if lang == language]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        'OMP_NUM_THREADS': '1',
        'MKL_NUM_THREADS': '1',
        'PYTHONPATH': str(REPO),
        'PYTHONWARNINGS': 'ignore',
        'NO_MKDOCS_2_WARNING': '1',
    }


def test_site_builds_without_a_warning(tmp_path):
    proc = subprocess.run(
        [sys.executable, '-m', 'mkdocs', 'build', '--strict', '--site-dir', str(tmp_path / 'site')],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and 'WARNING' not in log, log[-4000:]
    assert (tmp_path / 'site' / 'api' / 'strategy' / 'index.html').is_file()


def test_readme_is_short_and_every_fence_says_its_language():
    assert len((REPO / 'README.md').read_text().splitlines()) <= 250
    for page in PAGES:
        for lang, _ in FENCE.findall(page.read_text()):
            assert lang in LANGUAGES, f'{_name(page)}: a ```{lang} block (use one of {sorted(LANGUAGES)})'


def test_pages_carry_no_development_history():
    for page in PAGES:
        if page.name != 'changelog.md':
            assert not re.search(r'issue #\d+', page.read_text(), re.IGNORECASE), _name(page)


@pytest.mark.parametrize('page', [p for p in PAGES if _blocks(p, 'python')], ids=_name)
def test_python_blocks_run(page, tmp_path):
    blocks = tmp_path / 'blocks.json'
    blocks.write_text(json.dumps(_blocks(page, 'python')))
    work = tmp_path / 'work'
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, '-c', RUNNER, str(blocks)], cwd=work, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f'{_name(page)}:\n' + (proc.stdout[-3000:] + proc.stderr[-4000:])


def _commands(pattern: str) -> dict[str, set[str]]:
    """What the shell blocks name (``python -m X`` modules, ``make X`` targets), and on which pages."""
    found: dict[str, set[str]] = {}
    for page in PAGES:
        for code in _blocks(page, 'bash'):
            for name in re.findall(pattern, code):
                found.setdefault(name, set()).add(_name(page))
    return found


def test_make_targets_in_shell_blocks_exist():
    targets = set(re.findall(r'^([\w-]+):', (REPO / 'Makefile').read_text(), re.MULTILINE))
    named = _commands(r'\bmake ([\w-]+)')
    assert {'demo', 'test', 'docs'} <= set(named)
    missing = {target: pages for target, pages in named.items() if target not in targets}
    assert not missing, f'make targets the docs name but the Makefile lacks: {missing}'


def test_python_modules_in_shell_blocks_import():
    named = _commands(r'python -m ((?:benchmarks|nni_base)(?:\.\w+)+)')
    assert any(name.startswith('benchmarks.') for name in named)
    code = 'import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n'
    proc = subprocess.run(
        [sys.executable, '-c', code, *sorted(named)], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f'{named}\n{proc.stderr[-3000:]}'


def test_pictures_exist():
    for page in PAGES:
        for target in re.findall(r'!\[[^\]]*\]\(([^)\s]+)', page.read_text()):
            assert (page.parent / target).is_file(), f'{_name(page)} shows {target}, which is missing'
