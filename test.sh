#!/usr/bin/env bash
# Runs the whole test suite, first installing what the tests need beyond
# Rust: Chromium (Debian's package) and the browser test's node packages,
# and redis-server (Debian's package) for the cluster tests, which start
# and stop their own servers on free loopback ports.
# Arguments go to cargo test: ./test.sh browser -- --nocapture
set -euo pipefail
cd "$(dirname "$0")"

# sudo only when we are not root already.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The browser test drives this Chromium from node (e2e/browser.mjs).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

# playwright-core, exactly as pinned in e2e/package-lock.json.
if [ ! -d e2e/node_modules ]; then
    (cd e2e && npm ci --no-audit --no-fund)
fi

exec cargo test --workspace "$@"
