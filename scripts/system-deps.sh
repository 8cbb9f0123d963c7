#!/usr/bin/env bash
# The Debian packages that `make run` and `make test` need, installed when they are missing.
#
#   scripts/system-deps.sh run    # bubblewrap, node/npm, a C++ compiler, python3-venv
#   scripts/system-deps.sh test   # the same, plus chromium, git, curl, jq
#
# As root: `apt-get update` then `apt-get install -y` of the missing packages (never removes
# anything). Otherwise: one message naming the packages and the command to run, then exit 1
# for `test` (its tests need every one) and 0 for `run` (the server starts; what a missing
# package disables, such as code execution without bubblewrap, says so in /healthz).
# BWRAP_PATH, CHROMIUM_PATH and PYTHON name the binaries to look for, as the app and tests do.
set -euo pipefail

purpose=${1:-}
case "$purpose" in
  run|test) ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac

missing=()
need() { # need PACKAGE... : add the packages unless already listed
  local package
  for package in "$@"; do
    case " ${missing[*]-} " in *" $package "*) ;; *) missing+=("$package") ;; esac
  done
}
has() { command -v "$1" >/dev/null 2>&1; }

check() {
  missing=()
  has "${BWRAP_PATH:-bwrap}" || need bubblewrap
  has node || need nodejs
  has npm || need npm
  # llama-cpp-python (the embedded model) is compiled from source on install.
  { has c++ || has g++; } || need g++
  "${PYTHON:-python3}" -c 'import ensurepip, venv' >/dev/null 2>&1 || need python3-venv
  if [ "$purpose" = test ]; then
    [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || need chromium
    has git || need git
    has curl || need curl
    has jq || need jq
  fi
}

check
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then
  echo "system-deps: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  check
  [ ${#missing[@]} -eq 0 ] && exit 0
  echo "system-deps: still missing after apt-get install: ${missing[*]}" >&2
else
  command="apt-get update && apt-get install -y ${missing[*]}"
  echo "system-deps: missing Debian packages for \`make $purpose\`: ${missing[*]}" >&2
  echo "system-deps: install them as root:  $command" >&2
fi
if [ "$purpose" = run ]; then
  echo "system-deps: continuing; /healthz reports what is unavailable without them" >&2
  exit 0
fi
exit 1
