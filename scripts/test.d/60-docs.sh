#!/usr/bin/env bash
# The documentation site (mkdocs.yml): docs/*.md and the API reference generated from the
# docstrings (docs/api.md, mkdocstrings). --strict turns every warning (a broken link, a
# docstring that does not parse, a missing page) into a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! python -c "import mkdocs, mkdocstrings" 2>/dev/null; then
  echo "FAILED: mkdocs/mkdocstrings not installed (scripts/setup.sh installs requirements-docs.txt)"
  exit 1
fi
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
python -m mkdocs build --strict --site-dir "$site"
