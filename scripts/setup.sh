#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine (as root) for building and testing omac: the Debian
# packages in .ci/apt-packages, a Rust toolchain if there is none, and the unprivileged
# user the test suite runs as a second time. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/setup.sh must run as root (it installs packages and creates a test user)" >&2
  exit 2
fi

mapfile -t wanted < <(grep -vE '^\s*(#|$)' .ci/apt-packages)
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages that start services on installation must not start them here.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  rm -f /usr/sbin/policy-rc.d
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing Rust with rustup"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

# The unprivileged user the test suite runs as a second time.
if ! id omactest >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash omactest
fi
