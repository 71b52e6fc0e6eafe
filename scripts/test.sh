#!/usr/bin/env bash
# Runs the whole routemesh test suite; CI (.ci/run) runs exactly this.
#
# Set-up it does itself, each step a no-op when already done:
#   - fetches the MiniLM model (scripts/fetch-model.sh),
#   - creates .venv with the official `openai` Python client, which one
#     integration test drives the gateway with.
# Then it runs every test of the workspace (cargo-nextest when installed,
# else cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."

OPENAI_VERSION=3.54.0

scripts/fetch-model.sh

if ! .venv/bin/python -c "import openai" >/dev/null 2>&1; then
    echo "test.sh: creating .venv with openai==${OPENAI_VERSION} (needs PyPI)" >&2
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check "openai==${OPENAI_VERSION}"
fi

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
