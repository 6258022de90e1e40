#!/usr/bin/env bash
# Set up and start the dashboard on its embedded defaults: http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m streamlit run app.py --server.port "${PORT:-8501}" "$@"
