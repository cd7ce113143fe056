# shellcheck shell=bash
# Sourced by setup.sh, scripts/test.sh and scripts/lock.sh: how they speak, and the one way they find
# a Python (huggingface_hub 2.4 needs Python >= 3.10).

say() { printf '%s\n' "$*" >&2; }
err() { printf 'error: %s\n' "$*" >&2; }
# "$1" quoted for a shell, for paths in the fix commands we print (a space in a folder name must not break them).
q() { printf '%q' "$1"; }

# Is "$1" a Python >= 3.10?
python_ok() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' >/dev/null 2>&1
}

# Print the first Python on PATH that is new enough.
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
