#!/usr/bin/env bash
# Install MathJax 3 into book/_static/mathjax so that the book typesets math without any CDN.
# The package comes from the npm registry through npm itself, which checks its integrity hash.
# Only the browser (es5) files the tex-chtml component can load at run time are kept:
#   tex-chtml.js                 the combined component the pages load (Sphinx mathjax_path)
#   output/chtml/fonts/woff-v2   the CommonHTML fonts it fetches
#   input/tex/extensions         TeX packages it autoloads (\require, \boldsymbol, \cancel, ...)
#   ui, a11y, sre                what the right-click menu loads (accessibility, speech, explorer)
set -euo pipefail

MATHJAX_VERSION=3.2.2   # last 3.x release; 4.x changed the font layout and configuration
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/_static/mathjax"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "mathjax@$MATHJAX_VERSION" >/dev/null)
tarball="$work/mathjax-$MATHJAX_VERSION.tgz"
test -f "$tarball" || { echo "npm pack did not produce $tarball" >&2; exit 1; }

tar -xzf "$tarball" -C "$work" \
  package/LICENSE \
  package/es5/tex-chtml.js \
  package/es5/output/chtml/fonts/woff-v2 \
  package/es5/input/tex/extensions \
  package/es5/ui \
  package/es5/a11y \
  package/es5/sre

# Replace atomically-ish: a half-copied tree must not look installed to make.
mkdir -p "$(dirname "$dest")"   # book/_static holds nothing else in git
rm -rf "$dest.tmp" "$dest"
cp -R "$work/package/es5" "$dest.tmp"
cp "$work/package/LICENSE" "$dest.tmp/LICENSE"
echo "$MATHJAX_VERSION" > "$dest.tmp/VERSION"
mv "$dest.tmp" "$dest"
echo "MathJax $MATHJAX_VERSION installed in ${dest#"$PWD/"}"
