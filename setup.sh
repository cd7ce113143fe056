#!/usr/bin/env bash
# Set up fishaudio/openaudio-s1-mini (a gated Hugging Face model) in checkpoints/openaudio-s1-mini.
#
# This script stays thin: it finds a Python (>= 3.10), has scripts/bootstrap.py build .venv from
# requirements.lock (the hash-locked form of requirements.txt) when needed, one run at a time, notes
# where the token comes from and hands it to auth_helper.py over standard input. Everything else
# (validation, access checks, the verified download, messages, exit codes) is in Python: see
# `bash setup.sh --help`.
#
# Never: a token in a command's argv, in `set -x` output, or in an exported variable the user did
# not export; never `source` a .env file (the helper parses it).

# Started by another shell (`sh setup.sh`: dash on Debian and Ubuntu), this block is all it reads: plain sh.
if [ -z "${BASH_VERSION:-}" ]; then
  case "${ZSH_EVAL_CONTEXT:-}" in
    *:file*)
      echo "error: setup.sh is run, not sourced (it sets nothing in this shell); run: bash setup.sh" >&2
      return 2
      ;;
  esac
  case "$0" in
    *setup.sh)
      if command -v bash >/dev/null 2>&1; then
        exec bash "$0" "$@"
      fi
      echo "error: setup.sh needs bash, and there is none on PATH; fix: sudo apt-get install bash" >&2
      exit 2
      ;;
  esac
  echo "error: setup.sh needs bash and is not to be sourced; run: bash setup.sh (in the project folder)" >&2
  # shellcheck disable=SC2317 # reached when the shell was not sourcing: then `return` fails
  return 2 2>/dev/null || exit 2
fi
# Sourced (`source setup.sh`): say so and leave the caller's shell as it was (no `set` has run yet).
# Read from standard input (`bash < setup.sh`, `curl … | bash`): its folder, with the project, is unknown.
if [[ "${BASH_SOURCE[0]:-}" != "$0" ]]; then
  if [[ -n "${BASH_SOURCE[0]:-}" ]]; then
    printf 'error: setup.sh is run, not sourced (it sets nothing in this shell); run: bash %q\n' \
      "${BASH_SOURCE[0]}" >&2
    return 2
  fi
  echo "error: setup.sh was read from standard input, so it cannot know the project folder beside it" >&2
  echo "fix: run it by its path: cd into the project folder and run bash setup.sh" >&2
  exit 2
fi

set -euo pipefail
# When this run started, in seconds since the epoch with fractions, for the helper (it can tell how long the
# environment took). Bash >= 5 has EPOCHREALTIME, written with the locale's decimal mark; older ones: whole seconds.
if [[ -n "${EPOCHREALTIME:-}" ]]; then
  GATEDFETCH_STARTED="${EPOCHREALTIME/,/.}"
else
  GATEDFETCH_STARTED="$(date +%s)"
fi
export GATEDFETCH_STARTED
unset CDPATH # else `cd` prints the folder it enters, and $(cd … && pwd) holds it twice

# Started with standard error closed (`2>&-`): nothing can be said, but the job and its exit code still stand
# (every message below would fail, and with `set -e` end the script).
{ true >&2; } 2>/dev/null || exec 2>/dev/null

# The folder of this file, after symlinks (a link to setup.sh from elsewhere runs the project's own).
script_dir() {
  local src="$1" dir
  while [[ -L "${src}" ]]; do
    dir="$(cd -P -- "$(dirname -- "${src}")" && pwd)"
    src="$(readlink -- "${src}")"
    [[ "${src}" == /* ]] || src="${dir}/${src}"
  done
  cd -P -- "$(dirname -- "${src}")" && pwd
}
HERE="$(script_dir "${BASH_SOURCE[0]}")"
VENV="${HERE}/.venv"
MIN_PY="3.10"
QUIET=0 # --quiet: progress lines are not printed, errors are
PY=""   # the interpreter bootstrap_python chose

# shellcheck source=scripts/common.sh
source "${HERE}/scripts/common.sh"

# The interpreter to run the helper with, into PY: $PYTHON, or the project's .venv, which
# scripts/bootstrap.py builds when it is missing, unusable (it says why) or from another requirements.lock;
# its exit codes are setup.sh's (2 usage, 7 index unreachable, 8 hash mismatch, 9 local disk, 1 other).
# Not in a $(…) subshell: a SIGTERM to setup.sh then ends the run, and a bootstrap waiting on .venv.lock sees it.
bootstrap_python() {
  if [[ -n "${PYTHON:-}" ]]; then
    check_python_variable || return
    PY="${PYTHON}"
    return 0
  fi
  # A current .venv needs no other Python (cron, systemd and CI steps often have none on PATH).
  # One start of .venv's Python, isolated and without site (-I -S: the check needs the standard library only);
  # one too old to even read bootstrap.py fails here and is diagnosed by the build below.
  if [[ -x "${VENV}/bin/python" ]] && "${VENV}/bin/python" -I -S "${HERE}/scripts/bootstrap.py" "${HERE}" --ready \
    2>/dev/null; then
    PY="${VENV}/bin/python"
    return 0
  fi
  local base
  if ! base="$(find_python)"; then
    err "no Python >= ${MIN_PY} found (huggingface_hub needs it)"
    say "fix: on Debian/Ubuntu: sudo apt-get install python3 python3-venv (Ubuntu 20.04: python3.10 from deadsnakes),"
    say "     on macOS: brew install python; then run bash setup.sh again"
    return 1
  fi
  local quiet=()
  [[ "${QUIET}" == 0 ]] || quiet=(--quiet)
  "${base}" "${HERE}/scripts/bootstrap.py" "${HERE}" --base "${base}" ${quiet[@]+"${quiet[@]}"} || return
  PY="${VENV}/bin/python"
}

# Is $PYTHON an interpreter the helper can run with? Asked of itself; anything else is exit 2 naming PYTHON.
check_python_variable() {
  local said fix="fix: point PYTHON at a Python >= ${MIN_PY} with the requirements, or unset it to let setup.sh build .venv"
  if ! command -v -- "${PYTHON}" >/dev/null 2>&1; then
    err "PYTHON=${PYTHON}: no such program"
    say "${fix}"
    return 2
  fi
  # One start: its version, and whether it has the packages (found, not imported: that would cost the import).
  said="$("${PYTHON}" -c 'import sys, importlib.util as u
v = sys.version_info
has = v >= (3, 10) and all(u.find_spec(m) for m in ("huggingface_hub", "dotenv"))
sys.stdout.write("python %d.%d %s %s\n" % (v[0], v[1], "ok" if v >= (3, 10) else "old", "has" if has else "lacks"))' \
    2>/dev/null </dev/null || true)"
  case "${said}" in
    "python "*" ok has") ;;
    "python "*" ok lacks")
      err "PYTHON=${PYTHON} lacks huggingface_hub or python-dotenv"
      say "fix: $(q "${PYTHON}") -m pip install -r $(q "${HERE}/requirements.txt")   (or unset PYTHON to use .venv)"
      return 2
      ;;
    "python "*)
      said="${said#python }"
      err "PYTHON=${PYTHON} is Python ${said%% *}; huggingface_hub needs Python >= ${MIN_PY}"
      say "${fix}"
      return 2
      ;;
    *)
      err "PYTHON=${PYTHON} is not a Python interpreter (asked for its version, it gave none)"
      say "${fix}"
      return 2
      ;;
  esac
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
      # The token goes one way only: through the pipe. The helper's environment does not carry it too.
      printf '%s' "${!var}" |
        env -u HF_TOKEN -u HUGGING_FACE_HUB_TOKEN "${py}" "${HERE}/auth_helper.py" --token-from "${var}" "$@"
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
    local any=""
    if [[ -n "${PYTHON:-}" ]] && python_ok "${PYTHON}"; then
      any="${PYTHON}"
    elif python_ok "${VENV}/bin/python"; then
      any="${VENV}/bin/python"
    else
      any="$(find_python || true)"
    fi
    if [[ -z "${any}" ]]; then
      err "no Python >= ${MIN_PY} found to show the help; see README.md"
      return 1
    fi
    "${any}" "${HERE}/auth_helper.py" --help
    return
  fi

  local rc=0
  if has_flag --quiet "$@"; then
    QUIET=1
  fi
  bootstrap_python || rc=$?
  if [[ "${rc}" -ne 0 ]]; then
    return "${rc}"
  fi
  hand_over "${PY}" "$@"
}

main "$@"
