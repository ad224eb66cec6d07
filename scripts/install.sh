#!/usr/bin/env bash
# Create or refresh the project's virtualenv on a fresh machine.
#
# Why not a plain `pip install -e .`:
# - learn2learn 0.2.0 has no wheel for Python 3.11 and its shipped C sources fail to compile there;
#   it must be re-cythonized from its .pyx sources (build_ext) and installed without its heavy
#   optional deps (gsutil, qpth, cvxpy).
# - torch/torchvision are pinned to the pair this machine kind serves from local disk (pyproject.toml declares the
#   same minor versions).
# - nnictl needs pkg_resources, so setuptools stays below 81.
set -euo pipefail
venv="${1:-.venv}"
py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "error: nni-base needs Python 3.11 (found $("$py" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 2
fi
# torch 2.14.1 on x86_64 is a CUDA build: the virtualenv needs about 6.5 GB. Fail early and say so, rather than
# leave a half-installed venv behind pip's "No space left on device".
if [ ! -f "$venv/.nni-base-installed" ]; then
    parent="$(dirname "$(realpath -m "$venv")")"
    free_kb="$(df -Pk "$parent" | awk 'NR==2 {print $4}')"
    need_kb=$((7 * 1024 * 1024))
    if [ -n "$free_kb" ] && [ "$free_kb" -lt "$need_kb" ]; then
        echo "error: $((free_kb / 1024)) MB free under $parent; installing nni-base's virtualenv needs about 7 GB" >&2
        echo "       (torch's CUDA build). Free some space (old virtualenvs, pip caches) and run make again." >&2
        exit 2
    fi
fi
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check --no-cache-dir -q)
"${pip[@]}" -U pip "setuptools>=77,<81" wheel cython numpy
"${pip[@]}" "torch==2.14.1" "torchvision==0.29.1"
if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("learn2learn") == "0.2.0"' 2>/dev/null; then
    "${pip[@]}" --no-deps --no-build-isolation -C--build-option=build_ext "learn2learn==0.2.0"
fi
"${pip[@]}" -r requirements.txt
"${pip[@]}" --no-deps --no-build-isolation -e .
"$venv/bin/python" -c 'import learn2learn, nni, torch, pytorch_lightning, nni_base' 2>/dev/null
echo "virtualenv ready: $venv"
