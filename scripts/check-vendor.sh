#!/usr/bin/env bash
# CI check: vendor/ must be exactly what scripts/vendor-libssh2.sh produces (the published crate,
# checksum pinned, plus the patches in vendor/), and carry every fix in vendor/security/fixes.tsv.
# Re-runs the script into the tree and fails if anything under vendor/ then differs from the
# commit. Needs static.crates.io. Exit 0: identical; 1: differs, a fix is missing, or the
# script failed.
set -euo pipefail
cd "$(dirname "$0")/.."

# The script rewrites vendor/libssh2-sys: refuse to run over uncommitted work there.
if [ -n "$(git status --porcelain -- vendor/)" ]; then
  echo "check-vendor: vendor/ has uncommitted changes; commit or stash them first:" >&2
  git status --short -- vendor/ >&2
  exit 1
fi

if ! ./scripts/vendor-libssh2.sh; then
  echo "check-vendor: FAILED: scripts/vendor-libssh2.sh did not complete (see above)" >&2
  exit 1
fi

# git diff does not see new files, so list untracked ones too.
untracked=$(git ls-files --others --exclude-standard -- vendor/)
if ! git diff --exit-code --stat -- vendor/ || [ -n "$untracked" ]; then
  [ -z "$untracked" ] || printf 'untracked: %s\n' $untracked >&2
  echo "check-vendor: FAILED: vendor/ differs from what scripts/vendor-libssh2.sh produces." >&2
  echo "check-vendor: vendored code must only change through that script and the patches in" >&2
  echo "check-vendor: vendor/ (see vendor/README.md); run it, review, and commit its output." >&2
  exit 1
fi
echo "check-vendor: vendor/ is exactly the output of scripts/vendor-libssh2.sh"
