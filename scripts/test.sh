#!/usr/bin/env bash
# The test command of the README: on a fresh Debian 12 machine (as root) it installs what
# is missing, builds the workspace, and runs every test twice: as root, then as the
# unprivileged user `omactest`, since sandboxes behave differently for the two.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bash "$src/scripts/setup.sh"
export PATH="$HOME/.cargo/bin:$PATH"

# The unprivileged user must reach the sources, the built tests and the OCI schemas, which
# may live under an unreadable home: everything runs from a world-readable copy.
ci=/var/tmp/omac-ci
mkdir -p "$ci/src"
# --touch: a copy must never look older than a build made from an earlier copy (cargo
# compares modification times, and tar would keep the originals').
(cd "$src" && tar --exclude=./target -cf - .) | (cd "$ci/src" && tar --touch -xf -)
schema_src=${OMAC_OCI_SCHEMA_DIR:-$src/../shared/oci-runtime-spec/schema}
if [ -d "$schema_src" ]; then
  rm -rf "$ci/oci-schema" && cp -r "$schema_src" "$ci/oci-schema"
  export OMAC_OCI_SCHEMA_DIR="$ci/oci-schema"
elif [ -n "${OMAC_OCI_SCHEMA_DIR:-}" ]; then
  export OMAC_OCI_SCHEMA_DIR  # set but missing: the schema tests fail and say so
fi
export CARGO_TARGET_DIR="$ci/target"
cd "$ci/src"

echo "== building"
cargo build --workspace --all-targets --quiet
exes=$(cargo test --workspace --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] != ["bin"]:
        print(m["manifest_path"].rsplit("/", 1)[0] + " " + m["executable"])')
chmod -R a+rX "$ci"

echo "== tests as root"
cargo test --workspace --quiet --no-fail-fast

echo "== tests as the unprivileged user omactest"
failed=0
while read -r dir exe; do
  [ -n "$exe" ] || continue
  echo "-- $(basename "$exe")"
  if ! (cd "$dir" && setpriv --reuid=omactest --regid=omactest --init-groups \
        env -i HOME=/home/omactest USER=omactest LOGNAME=omactest \
        PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
        ${OMAC_OCI_SCHEMA_DIR:+OMAC_OCI_SCHEMA_DIR=$OMAC_OCI_SCHEMA_DIR} \
        "$exe" --quiet); then
    failed=1
  fi
done <<< "$exes"
if [ $failed != 0 ]; then
  echo "some tests failed as the unprivileged user" >&2
  exit 1
fi
echo "== all tests passed as root and as omactest"
