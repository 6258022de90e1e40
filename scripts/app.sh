#!/usr/bin/env bash
# Set up and start the dashboard on its embedded defaults: http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# loopback only by default: serving a team is a choice (ADDRESS=0.0.0.0), not an accident
exec .venv/bin/python -m streamlit run app.py --server.port "${PORT:-8501}" \
  --server.address "${ADDRESS:-127.0.0.1}" "$@"
