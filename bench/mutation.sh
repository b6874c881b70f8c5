#!/usr/bin/env bash
# Mutation testing of the key handling, commands, core and Slack events against their fast tests
# (bench/mutation.py says how). Slow, so not in CI. Needs mutmut: pip install -e '.[mutation]'.
#   bench/mutation.sh [--max-children N] [--time-box SECONDS] [--keep] [--rev REV] [GROUP ...]
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" bench/mutation.py "$@"
