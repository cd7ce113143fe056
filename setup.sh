#!/usr/bin/env bash
# Set up fishaudio/openaudio-s1-mini (a gated Hugging Face model) in checkpoints/openaudio-s1-mini.
#
# This script stays thin: it finds a Python (>= 3.10), builds .venv from requirements.lock (the
# hash-locked form of requirements.txt) when needed, one run at a time, notes where the token comes
# from and hands it to auth_helper.py over standard input. Everything else (validation, access
# checks, the verified download, messages, exit codes) is in Python: see `bash setup.sh --help`.
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
# How long a run waits for another setup.sh that is building .venv, in seconds (then it gives up).
VENV_WAIT="${GATEDFETCH_VENV_WAIT:-600}"

# Exit codes: the product's one table is EXIT_MEANINGS in gatedfetch/failures.py (`bash setup.sh --help`
# prints it). These steps fail before that Python can run, so the codes they use are repeated here.
EXIT_HUB_UNREACHABLE=7 # pip could not fetch the packages (the index is unreachable or failing)
EXIT_INTEGRITY=8       # a package file does not match the sha256 in requirements.lock
EXIT_LOCAL_DISK=9      # no space left, or the folder is not writable
QUIET=0                # --quiet: progress lines are not printed, errors are
PY=""                  # the interpreter bootstrap_python chose

# shellcheck source=scripts/common.sh
source "${HERE}/scripts/common.sh"

# Print a hash of requirements.lock (to skip the install on re-runs while it is unchanged).
lock_stamp() {
  "$1" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
    "${HERE}/requirements.lock"
}

# Print why .venv cannot be used as it is (nothing when there is none, or it is a working venv of a Python
# >= 3.10): another tool may have left it (an editor's Python 3.8), or the Python it was made with is gone.
venv_problem() {
  local said made=""
  if [[ -L "${VENV}" && ! -e "${VENV}" ]]; then
    echo "it is a symlink to $(readlink -- "${VENV}"), which does not exist"
    return
  fi
  [[ -e "${VENV}" ]] || return 0
  if [[ ! -d "${VENV}" ]]; then
    echo "it is a file, not a folder"
    return
  fi
  if [[ ! -f "${VENV}/pyvenv.cfg" ]]; then
    echo "it is a folder but not a Python venv (no pyvenv.cfg)"
    return
  fi
  if [[ ! -e "${VENV}/bin/python" ]]; then
    if [[ -L "${VENV}/bin/python" ]]; then
      echo "the Python it was made with is gone ($(readlink -- "${VENV}/bin/python") does not exist)"
    else
      echo "it has no bin/python"
    fi
    return
  fi
  # pyvenv.cfg names the version it was made with (`version = 3.8.10`, or `version_info = 3.8.10.final.0`)
  made="$(sed -n 's/^version\(_info\)\{0,1\} *= *\([0-9]*\.[0-9]*\).*/\2/p' "${VENV}/pyvenv.cfg" | head -n 1)"
  if [[ "${made}" =~ ^3\.[0-9]$ ]]; then
    echo "it was made with Python ${made} (>= ${MIN_PY} is needed)"
    return
  fi
  said="$(python_says "${VENV}/bin/python")"
  case "${said}" in
    "python "*" ok") ;;
    "python "*) echo "its bin/python is Python ${said#python } (>= ${MIN_PY} is needed)" ;;
    *) echo "its bin/python does not run (the Python it was made with may have been removed or upgraded)" ;;
  esac
}

# Is .venv a working venv built from the lock whose hash is "$1"?
venv_ready() {
  local have=""
  if [[ -f "${VENV}/.lock.sha256" ]]; then
    have="$(<"${VENV}/.lock.sha256")"
  fi
  [[ -n "$1" && "$1" == "${have}" && -d "${VENV}" && -z "$(venv_problem)" ]]
}

# Take the lock on fd 9 (open on .venv.lock) with Python "$1": flock(2), which both Linux and macOS have
# and which the kernel lets go of when its holder exits, so a killed run leaves no stale lock. The lock
# belongs to the open file, not to this short Python, so it holds until the caller closes fd 9.
# Exit 0: taken; 3: still held by another run after VENV_WAIT seconds; 4: the lock cannot be used;
# 5: stopped while waiting (Ctrl-C, or setup.sh itself was killed).
take_lock() {
  "$1" - "${VENV_WAIT}" "${VENV}" "${QUIET}" <<'PY'
import fcntl, os, sys, time


def take() -> bool:
    try:
        fcntl.flock(9, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


wait, venv, quiet = float(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
parent = os.getppid()  # setup.sh: when it is stopped (kill, SIGTERM), this waiter ends too, and takes nothing
try:
    if take():
        sys.exit(0)
    if not quiet:
        print(f"python: another setup.sh is building {venv}; waiting (up to {wait:.0f} s)…", file=sys.stderr, flush=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if os.getppid() != parent:
            sys.exit(5)
        if take():
            sys.exit(0)
    sys.exit(3)
except OSError as exc:
    print(f"error: cannot lock {venv}.lock: {exc.strerror}", file=sys.stderr)
    sys.exit(4)
except KeyboardInterrupt:
    sys.exit(5)
PY
}

# If the error output "$2" of step "$1" names a local-disk cause (folder not writable, no space left),
# say so with the fix and succeed; else fail and say nothing.
disk_failure() {
  local step="$1" out="$2"
  case "${out}" in
    *"Permission denied"* | *"Read-only file system"* | *"Operation not permitted"*)
      err "${step} failed: ${HERE} is not writable"
      say "fix: make it yours (sudo chown -R \"\$(id -un)\" $(q "${HERE}")) or writable (chmod -R u+w $(q "${HERE}")),"
      say "     or clone the project into a folder you can write; then run bash setup.sh again"
      ;;
    *"No space left on device"* | *"Disk quota exceeded"*)
      local tmp="${TMPDIR:-/tmp}"
      tmp="${tmp%/}"
      if [[ "${out}" == *"${tmp}/"* || "$(free_kb "${HERE}")" -gt 512000 ]]; then
        err "${step} failed: no space left in the temporary folder ${tmp} (TMPDIR), where Python unpacks pip"
        say "fix: free some space there (df -h $(q "${tmp}")), or point TMPDIR at a disk with space:"
        say "     TMPDIR=$(q "${HERE}") bash setup.sh"
        return 0
      fi
      err "${step} failed: no space left on the disk that holds ${HERE}"
      say "fix: free some space there (df -h $(q "${HERE}") shows how much is left; .venv needs about 100 MB),"
      say "     then run bash setup.sh again"
      ;;
    *) return 1 ;;
  esac
}

# Print the kilobytes free on the disk that holds folder "$1" (0 when unknown).
free_kb() {
  df -Pk -- "$1" 2>/dev/null | awk 'NR == 2 { print $4 + 0; found = 1 } END { if (!found) print 0 }'
}

# Show the output "$2" of failed step "$1", indented, so its own words come before the diagnosis.
show_output() {
  local line
  if [[ -n "$2" ]]; then
    say "python: $1 said:"
    while IFS= read -r line; do
      say "  ${line}"
    done <<<"$2"
  fi
}

# Name the cause of a failed `python -m venv` from its output "$2" (already shown) and return the code.
venv_failed() {
  local base="$1" out="$2" ver
  ver="$("${base}" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  if disk_failure "${base} -m venv" "${out}"; then
    return "${EXIT_LOCAL_DISK}"
  fi
  # Debian's python3 without python3-venv says "...because ensurepip is not\navailable" (wrapped).
  if [[ "${out}" == *"ensurepip is not"* || "${out}" == *"No module named"* ]] ||
    ! "${base}" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    err "${base} -m venv failed: the venv module (with ensurepip) is missing"
    say "fix: sudo apt-get install python${ver}-venv   (or python3-venv), then run bash setup.sh again"
    return 1
  fi
  err "${base} -m venv failed (its message is above)"
  say "fix: check that ${HERE} is writable and its disk has space (df -h $(q "${HERE}")); if the message names"
  say "     ensurepip: sudo apt-get install python${ver}-venv; then run bash setup.sh again"
  return 1
}

# Build .venv from requirements.lock with Python "$1" while holding the lock (fd 9); "$2" is the lock's
# hash. Runs that wait for the lock find .venv ready when they get it, and build nothing.
build_venv() {
  local base="$1" want="$2" rc=0 out
  take_lock "${base}" || rc=$?
  if [[ "${rc}" -eq 3 ]]; then
    err "gave up after ${VENV_WAIT} s: another setup.sh is still building ${VENV}"
    say "fix: let it finish (or stop it), then run bash setup.sh again; GATEDFETCH_VENV_WAIT=SECONDS waits longer"
    return 1
  elif [[ "${rc}" -eq 5 ]]; then
    err "stopped while waiting for another setup.sh to build ${VENV}; nothing was changed"
    say "fix: run bash setup.sh again when you want it to go on"
    return 130
  elif [[ "${rc}" -ne 0 ]]; then
    err "could not lock ${VENV}.lock to build ${VENV}"
    say "fix: check that ${HERE} is on a local disk and writable, then run bash setup.sh again"
    return 1
  fi
  if venv_ready "${want}"; then
    return 0
  fi

  local problem clear=()
  problem="$(venv_problem)"
  if [[ -n "${problem}" ]]; then
    say "python: ${VENV} cannot be used: ${problem}; building it anew"
    if [[ -L "${VENV}" ]]; then
      rm -f -- "${VENV}"
    elif [[ ! -d "${VENV}" || ! -f "${VENV}/pyvenv.cfg" ]]; then
      # Not a venv: kept aside, never deleted (it may be someone's).
      local aside="${VENV}.old"
      [[ ! -e "${aside}" && ! -L "${aside}" ]] || aside="${VENV}.old.$$"
      mv -- "${VENV}" "${aside}"
      say "python: moved it to ${aside}"
    else
      clear=(--clear)
    fi
  fi
  if ! "${base}" -c 'import os, sys; os.fsencode(sys.argv[1]).decode("utf-8")' "${HERE}" 2>/dev/null; then
    err "the project's folder ${HERE} has a name that is not UTF-8 text: Python's venv and pip fail there"
    say "fix: rename it (or the parent that has the odd name) to plain letters, e.g. mv $(q "${HERE}") ~/gatedfetch,"
    say "     then run bash setup.sh again from there"
    return "${EXIT_LOCAL_DISK}"
  fi

  note "python: building ${VENV} with ${base} (once; re-runs skip this while requirements.lock is unchanged)"
  if ! out="$("${base}" -m venv ${clear[@]+"${clear[@]}"} "${VENV}" 2>&1 </dev/null)"; then
    show_output "${base} -m venv" "${out}"
    venv_failed "${base}" "${out}"
    return
  fi
  # --require-hashes: every file must match the sha256 the lock names; --no-deps: the lock lists them all.
  if ! out="$("${VENV}/bin/python" -m pip install --disable-pip-version-check --quiet --require-hashes \
    --no-deps -r "${HERE}/requirements.lock" 2>&1 </dev/null)"; then
    show_output "pip install" "${out}"
    if disk_failure "pip install -r requirements.lock" "${out}"; then
      return "${EXIT_LOCAL_DISK}"
    fi
    if [[ "${out}" == *"DO NOT MATCH THE HASHES"* ]]; then
      err "pip install -r requirements.lock failed: a downloaded file is not the one the lock names (sha256)"
      say "fix: if you use a private index or proxy (PIP_INDEX_URL), it serves other files than PyPI: point it"
      say "     at PyPI or a faithful mirror; a changed requirements.lock is refreshed with bash scripts/lock.sh"
      return "${EXIT_INTEGRITY}"
    fi
    err "pip install -r requirements.lock failed (pip's message is above)"
    say "fix: check the network or proxy (PIP_INDEX_URL for a private index), then run bash setup.sh again;"
    say "     or set PYTHON to an interpreter that already has huggingface_hub and python-dotenv"
    return "${EXIT_HUB_UNREACHABLE}"
  elif [[ -n "${out}" ]]; then
    printf '%s\n' "${out}" >&2
  fi
  printf '%s\n' "${want}" >"${VENV}/.lock.sha256"
}

# The interpreter to run the helper with, into PY: $PYTHON, or the project's .venv (built if needed).
# Not in a $(…) subshell: a SIGTERM to setup.sh then ends the run, and the waiter on .venv.lock sees it.
bootstrap_python() {
  if [[ -n "${PYTHON:-}" ]]; then
    check_python_variable || return
    PY="${PYTHON}"
    return 0
  fi

  if [[ ! "${VENV_WAIT}" =~ ^[0-9]+$ ]]; then
    err "GATEDFETCH_VENV_WAIT=${VENV_WAIT} is not a whole number of seconds"
    say "fix: GATEDFETCH_VENV_WAIT=600 bash setup.sh (or unset it)"
    return 2
  fi
  if [[ ! -f "${HERE}/requirements.lock" ]]; then
    err "requirements.lock is missing beside setup.sh (it lists the exact packages .venv gets)"
    say "fix: git checkout requirements.lock (or bash scripts/lock.sh to compile it), then run bash setup.sh again"
    return 1
  fi
  # A current .venv needs no other Python (cron, systemd and CI steps often have none on PATH).
  if [[ -x "${VENV}/bin/python" ]] && venv_ready "$(lock_stamp "${VENV}/bin/python" 2>/dev/null || true)"; then
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
  local want
  want="$(lock_stamp "${base}")"
  if ! venv_ready "${want}"; then
    # One run at a time builds .venv: the others wait on .venv.lock, then use what it built.
    local out rc=0
    if [[ -e "${VENV}.lock" && ! -f "${VENV}.lock" ]]; then # a FIFO would block the open below forever
      err "${VENV}.lock is not a regular file, so it cannot be the lock that lets one setup.sh build ${VENV}"
      say "fix: rm $(q "${VENV}.lock")   (setup.sh makes it anew), then run bash setup.sh again"
      return "${EXIT_LOCAL_DISK}"
    fi
    if ! out="$({ : >>"${VENV}.lock"; } 2>&1)"; then
      if disk_failure "creating ${VENV}.lock" "${out}"; then
        return "${EXIT_LOCAL_DISK}"
      fi
      err "cannot create ${VENV}.lock: ${out##*: }"
      return 1
    fi
    build_venv "${base}" "${want}" 9>>"${VENV}.lock" || rc=$?
    if [[ "${rc}" -ne 0 ]]; then
      return "${rc}"
    fi
  fi
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
  said="$(python_says "${PYTHON}")"
  case "${said}" in
    "python "*" ok") ;;
    "python "*)
      err "PYTHON=${PYTHON} is Python ${said#python }; huggingface_hub needs Python >= ${MIN_PY}"
      say "${fix}"
      return 2
      ;;
    *)
      err "PYTHON=${PYTHON} is not a Python interpreter (asked for its version, it gave none)"
      say "${fix}"
      return 2
      ;;
  esac
  if ! "${PYTHON}" -c 'import huggingface_hub, dotenv' >/dev/null 2>&1 </dev/null; then
    err "PYTHON=${PYTHON} lacks huggingface_hub or python-dotenv"
    say "fix: $(q "${PYTHON}") -m pip install -r $(q "${HERE}/requirements.txt")   (or unset PYTHON to use .venv)"
    return 2
  fi
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
