#!/usr/bin/env bash
# Re-take the screenshots in docs/ui/ (docs/ui.md shows them): the browser test saves one per screen.
set -euo pipefail
cd "$(dirname "$0")/.."
TUNEPROOF_UI_SCREENSHOTS="$PWD/docs/ui" PYTHONPATH="$PWD" .venv/bin/python -m pytest -q tests/ui/test_workbench_browser.py
