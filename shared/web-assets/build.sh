#!/usr/bin/env bash
# Builds the files behind /docs (Swagger UI) and /asyncapi (the AsyncAPI React component's
# standalone bundle) from the npm packages package-lock.json pins, into the shared package's
# git-ignored static folder (shared/src/hirestream/shared/web/static), which the services serve
# at /docs/assets and the wheel carries (shared/pyproject.toml, `artifacts`).
#
#   shared/web-assets/build.sh           build unless the folder already matches the lock
#   shared/web-assets/build.sh --force   build again
#
# Runs from ./dev.sh (before the services start and before the tests) and in the Dockerfile's
# web-assets stage. npm installs into $WEB_ASSETS_WORK (default .stack/cache/web-assets), never
# next to the sources. Exits 2 with one line saying what to do when it cannot build.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATIC="$ROOT/shared/src/hirestream/shared/web/static"
WORK="${WEB_ASSETS_WORK:-$ROOT/.stack/cache/web-assets}"
STAMP="$STATIC/.built-from"
# What each served file is copied from; keep in step with web/documents.py.
FILES=(
  "swagger-ui-dist/swagger-ui-bundle.js:swagger-ui/swagger-ui-bundle.js"
  "swagger-ui-dist/swagger-ui.css:swagger-ui/swagger-ui.css"
  "swagger-ui-dist/favicon-32x32.png:swagger-ui/favicon-32x32.png"
  "swagger-ui-dist/LICENSE:swagger-ui/LICENSE"
  "@asyncapi/react-component/browser/standalone/index.js:asyncapi/index.js"
  "@asyncapi/react-component/browser/standalone/index.js.LICENSE.txt:asyncapi/index.js.LICENSE.txt"
  "@asyncapi/react-component/styles/default.min.css:asyncapi/default.min.css"
  "@asyncapi/react-component/LICENSE:asyncapi/LICENSE"
)

die() { echo "error: $*" >&2; exit 2; }

# The build is current when it was made from this lock file by this script.
wanted="$(cat "$HERE/package-lock.json" "$HERE/.npmrc" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [[ "${1:-}" != "--force" && -f "$STAMP" && "$(cat "$STAMP")" == "$wanted" ]]; then
  exit 0
fi

command -v npm >/dev/null 2>&1 \
  || die "npm not found — install Node 20 (Debian: apt-get install nodejs npm) to build the API document viewers"

mkdir -p "$WORK"
LOG="$WORK/npm.log"
cp "$HERE/package.json" "$HERE/package-lock.json" "$HERE/.npmrc" "$WORK/"
echo "building the API document viewers with npm ci (log: $LOG)" >&2
(cd "$WORK" && npm ci --no-audit --no-fund >"$LOG" 2>&1) \
  || die "npm ci failed in $WORK — see $LOG"

# Assemble next to the target, then swap it in: a server never sees half a build.
mkdir -p "$(dirname "$STATIC")"
staging="$(mktemp -d "$STATIC.new.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
for pair in "${FILES[@]}"; do
  source="$WORK/node_modules/${pair%%:*}" target="$staging/${pair#*:}"
  [[ -f "$source" ]] || die "$source is missing: did a package change its layout?"
  mkdir -p "$(dirname "$target")"
  cp "$source" "$target"
done
echo "$wanted" >"$staging/.built-from"
chmod -R u=rwX,go=rX "$staging"
rm -rf "$STATIC"
mv "$staging" "$STATIC"
trap - EXIT
echo "API document viewers built into ${STATIC#"$ROOT"/}" >&2
