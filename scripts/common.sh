# shellcheck shell=bash
# Sourced by setup.sh, scripts/test.sh and scripts/lock.sh: how they speak, and the one way they find
# a Python (huggingface_hub 2.4 needs Python >= 3.10).

say() { printf '%s\n' "$*" >&2; }
# A progress line: not printed under --quiet (setup.sh sets QUIET=1).
note() { [[ "${QUIET:-0}" == 1 ]] || say "$@"; }
err() { printf 'error: %s\n' "$*" >&2; }
# "$1" quoted for a shell, for paths in the fix commands we print (a space in a folder name must not break them).
q() { printf '%q' "$1"; }

# What "$1" says it is, asked itself: "python X.Y ok" (>= 3.10) or "python X.Y old"; nothing when it is
# not a Python at all (a program that merely exits 0, like /bin/true, prints no such line).
python_says() {
  "$1" -c 'import sys; v = sys.version_info; sys.stdout.write("python %d.%d %s\n" % (v[0], v[1], "ok" if v >= (3, 10) else "old"))' \
    2>/dev/null </dev/null || true
}

# Is "$1" a Python >= 3.10?
python_ok() {
  [[ "$(python_says "$1")" == "python "*" ok" ]]
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
