#!/usr/bin/env bash
# The hash-locked dependencies: requirements.txt (and requirements-dev.txt) are the lists people edit;
# requirements.lock (and requirements-dev.lock) are what setup.sh (and scripts/test.sh) install, with
# `pip install --require-hashes --no-deps`: exact versions and the sha256 of every file on PyPI for them.
#
#   bash scripts/lock.sh           refresh both locks (needs the package index; about a minute)
#   bash scripts/lock.sh --check   exit 1 if a lock was compiled from other requirements files than
#                                  today's (offline, instant; scripts/test.sh runs it first)
#
# The refresh installs uv into a throwaway venv and runs `uv pip compile --universal --generate-hashes
# --python-version 3.10`: one resolution for Python 3.10 and newer on every OS and CPU, with environment
# markers where a dependency applies only to some, and hashes for every wheel and sdist of each pinned
# version (PyYAML ships one wheel per platform). The index is PyPI, or $PIP_INDEX_URL if set.
# requirements-exclude.txt names dependencies left out of both locks (`--excludes`: hf-xet and fsspec, which
# nothing the project runs imports; the file says why), so .venv downloads about 2.8 MB instead of 7.3 MB.
# requirements-dev.lock is compiled with requirements.lock as constraints and the same exclusions, so the
# tests run the versions and the packages users get. Each lock starts with the sha256 of the files it was
# compiled from (the exclusion file too); --check compares them.

set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
REFRESH="bash scripts/lock.sh"

# shellcheck source=scripts/common.sh
source "${HERE}/scripts/common.sh"

# Print the sha256 of file "$2" (a path relative to the project) using Python "$1".
digest() {
  "$1" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "${HERE}/$2"
}

# The lines a lock starts with: one per input file, "# input: NAME sha256=HEX".
header() {
  local py="$1" name
  shift
  printf '# Hash-locked: install with pip install --require-hashes --no-deps -r <this file>.\n'
  printf '# Refresh with %s after editing an input below; scripts/test.sh fails while they disagree.\n' \
    "${REFRESH}"
  for name in "$@"; do
    printf '# input: %s sha256=%s\n' "${name}" "$(digest "${py}" "${name}")"
  done
}

# Is lock "$2" compiled from the input files as they are now? Names each one that changed.
check_lock() {
  local py="$1" lock="$2" line name want have inputs=0 stale=0
  if [[ ! -f "${HERE}/${lock}" ]]; then
    err "${lock} is missing"
    return 1
  fi
  while IFS= read -r line; do
    if [[ "${line}" =~ ^#\ input:\ ([^ ]+)\ sha256=([0-9a-f]{64})$ ]]; then
      name="${BASH_REMATCH[1]}"
      want="${BASH_REMATCH[2]}"
      inputs=$((inputs + 1))
      if [[ ! -f "${HERE}/${name}" ]]; then
        err "${lock} was compiled from ${name}, which is gone"
        stale=1
        continue
      fi
      have="$(digest "${py}" "${name}")"
      if [[ "${have}" != "${want}" ]]; then
        err "${lock} is out of date: ${name} changed since the lock was compiled"
        stale=1
      fi
    fi
  done <"${HERE}/${lock}"
  if [[ "${inputs}" -eq 0 ]]; then
    err "${lock} does not say which files it was compiled from (no '# input:' lines)"
    return 1
  fi
  return "${stale}"
}

check() {
  local py="$1" rc=0
  check_lock "${py}" requirements.lock || rc=1
  check_lock "${py}" requirements-dev.lock || rc=1
  if [[ "${rc}" -ne 0 ]]; then
    say "fix: ${REFRESH}   (re-resolves both locks from requirements.txt and requirements-dev.txt), then commit them"
  fi
  return "${rc}"
}

# Compile into lock "$3" the uv arguments after "$4"; "$4" names the input files (space-separated) whose
# sha256 the lock's header records.
compile() {
  local uv="$1" py="$2" out="$3" inputs=()
  read -r -a inputs <<<"$4"
  shift 4
  local index=()
  if [[ -n "${PIP_INDEX_URL:-}" ]]; then
    index=(--default-index "${PIP_INDEX_URL}")
  fi
  UV_PYTHON_DOWNLOADS=never "${uv}" pip compile --quiet --universal --generate-hashes --python-version 3.10 \
    --custom-compile-command "${REFRESH}" --excludes requirements-exclude.txt ${index[@]+"${index[@]}"} "$@" \
    -o "${out}.body"
  {
    header "${py}" "${inputs[@]}"
    cat "${out}.body"
  } >"${out}"
  rm -f "${out}.body"
}

refresh() {
  local py="$1" work
  work="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: the folder is known now, and `work` is local
  trap "rm -rf '${work}'" EXIT
  say "lock: installing uv into a throwaway venv"
  if ! "${py}" -m venv "${work}/venv" >&2; then
    err "${py} -m venv failed (see above)"
    return 1
  fi
  if ! "${work}/venv/bin/python" -m pip install --disable-pip-version-check --quiet uv >&2; then
    err "pip install uv failed (see pip's message above)"
    say "fix: check the network or proxy (PIP_INDEX_URL for a private index), then run ${REFRESH} again"
    return 1
  fi
  export UV_CACHE_DIR="${work}/cache"
  cd "${HERE}"

  say "lock: resolving requirements.txt"
  compile "${work}/venv/bin/uv" "${py}" "${work}/requirements.lock" "requirements.txt requirements-exclude.txt" \
    requirements.txt
  mv "${work}/requirements.lock" requirements.lock

  say "lock: resolving requirements-dev.txt (with requirements.lock as constraints)"
  compile "${work}/venv/bin/uv" "${py}" "${work}/requirements-dev.lock" \
    "requirements-dev.txt requirements.txt requirements-exclude.txt requirements.lock" requirements-dev.txt \
    -c requirements.lock
  mv "${work}/requirements-dev.lock" requirements-dev.lock

  say "lock: wrote requirements.lock and requirements-dev.lock; commit them with the requirements files"
}

main() {
  local py
  if ! py="$(find_python)"; then
    err "no Python >= 3.10 found"
    return 1
  fi
  case "${1:-}" in
    --check) check "${py}" ;;
    "") refresh "${py}" ;;
    *)
      err "unknown argument: $1"
      say "usage: bash scripts/lock.sh [--check]"
      return 2
      ;;
  esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
