#!/usr/bin/env bash
# The Flower environment for federated runs: a venv layered over .venv (it sees every package there,
# its own shadow them), holding flwr 1.42 and the older fastapi/typer/protobuf/packaging it pins, so
# .venv's serving stack keeps its versions. Use it with
#   TUNEPROOF_FLOWER_PYTHON=.venv-flower/bin/python  (tests)   or   tuneproof federate --python ...
set -euo pipefail
cd "$(dirname "$0")/.."
base="$PWD/.venv"
[ -x "$base/bin/python" ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
python3 -m venv .venv-flower
site=$(.venv-flower/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
basesite=$("$base/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$basesite" > "$site/tuneproof-base.pth"
# [simulation] adds ray (pinned by flwr: 2.55.1 here) for `tuneproof federate --simulation`.
.venv-flower/bin/python -m pip install -q "flwr[simulation]==1.42.0"
# torch and transformers must come from .venv, unchanged.
.venv-flower/bin/python -c 'import torch, transformers, flwr, ray; print("flower env:", flwr.__version__, torch.__version__, "ray", ray.__version__)'
