#!/usr/bin/env bash
# Install the real Claude Code CLI, pinned, into the project-local .tools/claude/ (for the e2e tests
# and the README demo). Idempotent: a second run with the right version installed does nothing.
# Prints the path of the native claude binary on its last line.
#
# Usage: scripts/install-claude.sh [PREFIX]     (default PREFIX: <repo>/.tools/claude)
set -euo pipefail

VERSION="${CLAUDE_CODE_VERSION:-2.1.197}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${1:-$ROOT/.tools/claude}"
PACKAGE_DIR="$PREFIX/node_modules/@anthropic-ai/claude-code"

installed_version() {
    [ -f "$PACKAGE_DIR/package.json" ] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version)' "$PACKAGE_DIR/package.json"
}

# node_modules/.bin/claude is a symlink into the package; the package's postinstall puts the
# platform's native binary there (or a small launcher that finds it). Resolve it to a real file.
binary_path() {
    local link="$PREFIX/node_modules/.bin/claude"
    [ -e "$link" ] || return 1
    readlink -f "$link"
}

if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm not found; install Node.js 18+ (e.g. apt-get install nodejs npm)" >&2
    exit 1
fi

if [ "$(installed_version)" != "$VERSION" ] || ! binary_path >/dev/null; then
    mkdir -p "$PREFIX"
    # A private package.json keeps npm from walking up into the project (which has none).
    [ -f "$PREFIX/package.json" ] || echo '{"name": "llamactl-tools", "private": true}' >"$PREFIX/package.json"
    echo "installing @anthropic-ai/claude-code@$VERSION into $PREFIX" >&2
    npm install --prefix "$PREFIX" --no-fund --no-audit --loglevel=error \
        "@anthropic-ai/claude-code@$VERSION" >&2
fi

BINARY="$(binary_path)" || { echo "error: $PREFIX/node_modules/.bin/claude missing after install" >&2; exit 1; }
"$BINARY" --version >&2
echo "$BINARY"
