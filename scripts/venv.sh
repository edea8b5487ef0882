#!/usr/bin/env bash
# Make ./.venv with the machine's Python 3.11+ (Debian's python3 needs python3-venv for it).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] && exit 0
if ! python3 -m venv .venv 2>/dev/null; then
  rm -rf .venv
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
