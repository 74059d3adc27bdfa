#!/usr/bin/env bash
# Applies sql/migrations/NNNN_*.sql in order, one transaction per file, skipping versions that
# auth.schema_migrations already records. Each file records its own version as its first write, so a
# plain `psql --single-transaction -f` of the same file is equivalent, and two runners racing on one
# database serialise on that row: the loser's transaction fails and is found already applied.
#
# Usage: sql/migrate.sh [conninfo]   (default: $DATABASE_URL, else libpq's PG* environment)
# The connecting role must be able to create roles and the pgcrypto extension (a superuser, usually).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target=${1:-${DATABASE_URL:-}}
psql_cmd=(psql -X -q -v ON_ERROR_STOP=1)
if [ -n "$target" ]; then psql_cmd+=(-d "$target"); fi

applied() {
  "${psql_cmd[@]}" -tA -c "select version from auth.schema_migrations" 2>/dev/null || true
}

done_versions=$(applied)
for file in "$here"/migrations/[0-9][0-9][0-9][0-9]_*.sql; do
  name=$(basename "$file")
  version=${name%%_*}
  if grep -qx "$version" <<<"$done_versions"; then continue; fi
  if ! "${psql_cmd[@]}" --single-transaction -f "$file"; then
    if grep -qx "$version" <<<"$(applied)"; then continue; fi
    echo "migrate: $name failed" >&2
    exit 1
  fi
  echo "migrate: applied $name"
done
