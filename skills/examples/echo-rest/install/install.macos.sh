#!/usr/bin/env bash
# echo-rest needs only Python 3.8 or newer (standard library); this checks for it.
set -euo pipefail
if ! command -v python3 >/dev/null 2>&1; then
  echo "echo-rest: python3 is missing; install it with: xcode-select --install (or brew install python)" >&2
  exit 1
fi
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' || {
  echo "echo-rest: python3 is $(python3 -V 2>&1); 3.8 or newer is needed" >&2
  exit 1
}
echo "echo-rest: $(python3 -V 2>&1) found; nothing to install"
