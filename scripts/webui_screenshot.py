"""Make the README's web-UI screenshot: a two-trial ``nnictl`` experiment, then headless Chromium on its overview.

    make screenshot            # = .venv/bin/python scripts/webui_screenshot.py --output docs/images/nni_webui.png

The experiment is the one ``tests/e2e/test_nnictl.py`` runs (the shipped ``examples/base_exp.yml`` with tiny pinned
trial sizes), in a temporary folder; only the picture is written. Needs Debian's ``chromium`` (or ``CHROMIUM=``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.test_nnictl import Experiment, _browse, _search_space  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--output', type=Path, default=REPO / 'docs' / 'images' / 'nni_webui.png')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='nni-webui-') as tmp:
        work = Path(tmp)
        exp = Experiment(work, _search_space(inner_lr=[0.03, 0.08]), name='base-hparams')  # the shipped name
        try:
            exp.start()
            jobs = exp.wait(trials=2)
            print(f'experiment {exp.id}: ' + ', '.join(f'{job["trialJobId"]} {job["status"]}' for job in jobs))
            shot = work / 'nni_webui.png'
            result = _browse(f'http://127.0.0.1:{exp.port}/oview', work / 'profile', f'--screenshot={shot}')
            if result.returncode != 0 or not shot.is_file():
                sys.exit(f'chromium failed:\n{result.stderr[-2000:]}')
            args.output.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, args.output)
        finally:
            exp.stop()
    print(f'screenshot: {args.output}')
    return args.output


if __name__ == '__main__':
    main()
