#!/usr/bin/env bash
# Set up fishaudio/openaudio-s1-mini (a gated Hugging Face model) in checkpoints/openaudio-s1-mini.
#
# This script stays thin: it finds a Python (>= 3.10), builds .venv from requirements.txt when
# needed, notes where the token comes from and hands it to auth_helper.py over standard input.
# Everything else (validation, access checks, the verified download, messages, exit codes) is
# in Python: see `bash setup.sh --help`.
#
# Never: a token in a command's argv, in `set -x` output, or in an exported variable the user did
# not export; never `source` a .env file (the helper parses it).

set -euo pipefail

# Started with standard error closed (`2>&-`): nothing can be said, but the job and its exit code still stand
# (every message below would fail, and with `set -e` end the script).
{ true >&2; } 2>/dev/null || exec 2>/dev/null

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
VENV="${HERE}/.venv"
MIN_PY="3.10"

say() { printf '%s\n' "$*" >&2; }
err() { printf 'error: %s\n' "$*" >&2; }

# Is "$1" a Python >= MIN_PY?
python_ok() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' >/dev/null 2>&1
}

# Print the first python3 on PATH that is new enough.
find_python() {
  local candidate
  for candidate in python3 python3.13 python3.12 python3.11 python3.10 python; do
    if command -v "${candidate}" >/dev/null 2>&1 && python_ok "${candidate}"; then
      command -v "${candidate}"
      return 0
    fi
  done
  return 1
}

# Print a hash of requirements.txt (to skip the install on re-runs while it is unchanged).
requirements_stamp() {
  "$1" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
    "${HERE}/requirements.txt"
}

# Print the interpreter to run the helper with: $PYTHON, or the project's .venv (built if needed).
bootstrap_python() {
  if [[ -n "${PYTHON:-}" ]]; then
    if ! python_ok "${PYTHON}"; then
      err "PYTHON=${PYTHON} is not a Python >= ${MIN_PY}"
      say "fix: point PYTHON at a newer interpreter, or unset it to let setup.sh build .venv"
      return 1
    fi
    if ! "${PYTHON}" -c 'import huggingface_hub, dotenv' >/dev/null 2>&1; then
      err "PYTHON=${PYTHON} lacks huggingface_hub or python-dotenv"
      say "fix: ${PYTHON} -m pip install -r ${HERE}/requirements.txt   (or unset PYTHON to use .venv)"
      return 1
    fi
    printf '%s\n' "${PYTHON}"
    return 0
  fi

  local base
  if ! base="$(find_python)"; then
    err "no Python >= ${MIN_PY} found (huggingface_hub needs it)"
    say "fix: on Debian/Ubuntu: sudo apt-get install python3 python3-venv (Ubuntu 20.04: python3.10 from deadsnakes),"
    say "     on macOS: brew install python; then run bash setup.sh again"
    return 1
  fi

  local stamp_file="${VENV}/.requirements.sha256"
  local want have=""
  want="$(requirements_stamp "${base}")"
  if [[ -x "${VENV}/bin/python" && -f "${stamp_file}" ]]; then
    have="$(<"${stamp_file}")"
  fi
  if [[ "${want}" == "${have}" ]] && python_ok "${VENV}/bin/python"; then
    printf '%s\n' "${VENV}/bin/python"
    return 0
  fi

  say "python: building ${VENV} with ${base} (once; re-runs skip this while requirements.txt is unchanged)"
  if ! "${base}" -m venv "${VENV}" >/dev/null 2>&1; then
    local ver
    ver="$("${base}" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    err "${base} -m venv failed: the venv module (with ensurepip) is missing"
    say "fix: sudo apt-get install python${ver}-venv   (or python3-venv), then run bash setup.sh again"
    return 1
  fi
  if ! "${VENV}/bin/python" -m pip install --disable-pip-version-check --quiet -r "${HERE}/requirements.txt" >&2; then
    err "pip install -r requirements.txt failed (see pip's message above)"
    say "fix: check the network or proxy (PIP_INDEX_URL for a private index), then run bash setup.sh again;"
    say "     or set PYTHON to an interpreter that already has huggingface_hub and python-dotenv"
    return 7
  fi
  printf '%s\n' "${want}" >"${stamp_file}"
  printf '%s\n' "${VENV}/bin/python"
}

has_flag() {
  local want="$1" arg
  shift
  for arg in "$@"; do
    [[ "${arg}" == "${want}" ]] && return 0
  done
  return 1
}

# Hand over to the helper. The token travels only through a pipe from the printf builtin (no
# process gets it as an argument); tracing is off here so `bash -x` cannot print it.
hand_over() {
  { set +x; } 2>/dev/null
  local py="$1" var rc
  shift
  if has_flag --token-stdin "$@"; then
    "${py}" "${HERE}/auth_helper.py" "$@"
    return
  fi
  for var in HF_TOKEN HUGGING_FACE_HUB_TOKEN; do
    if [[ -n "${!var:-}" ]]; then
      set +e
      printf '%s' "${!var}" | "${py}" "${HERE}/auth_helper.py" --stdin-source "${var} from the environment" "$@"
      rc="${PIPESTATUS[1]}"
      set -e
      return "${rc}"
    fi
  done
  # No token in the environment: the helper reads the .env file and the stored login itself.
  "${py}" "${HERE}/auth_helper.py" "$@"
}

main() {
  if has_flag --help "$@" || has_flag -h "$@"; then
    local any
    any="${PYTHON:-$(find_python || true)}"
    if [[ -z "${any}" ]]; then
      err "no Python >= ${MIN_PY} found to show the help; see README.md"
      return 1
    fi
    "${any}" "${HERE}/auth_helper.py" --help
    return
  fi

  local py rc=0
  py="$(bootstrap_python)" || rc=$?
  if [[ "${rc}" -ne 0 ]]; then
    return "${rc}"
  fi
  hand_over "${py}" "$@"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
