#!/bin/sh
# A stand-in for an AI agent, run by `omac start --inner sh -- scripts/standin-agent.sh`
# (the README's demo and the end-to-end tests): inside the sandbox it calls the echo skill
# through the facade, over plain HTTP on $OMAC_BASE and over the Unix socket $OMAC_SOCKET,
# tries to read a protected path, and reports what it saw, one `key=value` per line.
#   $1  the protected file to try (default: ~/.ssh/id_rsa)
#   $2  exit code to end with (default 0)
protected=${1:-$HOME/.ssh/id_rsa}
code=${2:-0}

say() { printf '%s=%s\n' "$1" "$2"; }
tmp=${TMPDIR:-/tmp}

say sandbox_hostname "$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)"
say omac_base "$(printf '%s' "$OMAC_BASE" | sed 's/[0-9a-f]\{64\}/<token>/')"
say omac_socket "$OMAC_SOCKET"
say omac_skills "$OMAC_SKILLS"

# The echo skill over loopback HTTP: OMAC_BASE ends with a slash.
status=$(curl -sS -m 10 -o $tmp/status.json -w '%{http_code}' "${OMAC_BASE}echo/status" 2>&1)
say base_status "$status"
say base_body "$(tr -d '\n' < $tmp/status.json 2>/dev/null)"
# The same skill's whoami through its own base URL (OMAC_ECHO_BASE has no trailing slash).
say whoami "$(curl -sS -m 10 "${OMAC_ECHO_BASE}/whoami" 2>&1 | tr -d '\n')"
# And over the Unix socket.
status=$(curl -sS -m 10 -o $tmp/sock.json -w '%{http_code}' --unix-socket "$OMAC_SOCKET" http://omac/echo/status 2>&1)
say socket_status "$status"
say socket_body "$(tr -d '\n' < $tmp/sock.json 2>/dev/null)"

# A protected path.
if content=$(cat "$protected" 2>&1); then
  say protected "READABLE: $content"
else
  say protected "denied: $content"
fi
say done yes
exit "$code"
