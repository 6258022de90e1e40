#!/usr/bin/env bash
# Set up and start the dashboard on its embedded defaults: http://localhost:8501
#
# Loopback only by default. Serving a team is a choice, made with access control:
#   OPTIM_TOKEN="$(openssl rand -hex 24)" ADDRESS=0.0.0.0 bash scripts/app.sh
# shows a sign-in box until the token is given (or opened as http://host:8501/?token=...).
set -euo pipefail
cd "$(dirname "$0")/.."
ADDRESS="${ADDRESS:-127.0.0.1}"
case "$ADDRESS" in
  127.0.0.1 | localhost | ::1) ;;
  *)
    if [ -z "${OPTIM_TOKEN:-}" ]; then
      echo "app.sh: ADDRESS=$ADDRESS serves the network, so OPTIM_TOKEN (a long random secret) must be set; or use ADDRESS=127.0.0.1" >&2
      exit 2
    fi
    ;;
esac
for arg in "$@"; do
  case "$arg" in
    --server.address*)
      echo "app.sh: set ADDRESS=... instead of $arg (so the access check sees it)" >&2
      exit 2
      ;;
  esac
done
bash scripts/setup.sh
exec .venv/bin/python -m streamlit run app.py --server.port "${PORT:-8501}" \
  --server.address "$ADDRESS" "$@"
