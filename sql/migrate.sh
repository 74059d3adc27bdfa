#!/usr/bin/env bash
# The one migration runner (`authgres migrate` runs it too). In one transaction, under an advisory
# lock so that service instances starting together take turns:
#   1. refuses to run when an applied migration's file has changed since (checksums in auth.schema_migrations);
#   2. applies the pending sql/migrations/NNNN_*.sql in order (state: tables, indexes, roles, data);
#   3. applies each sql/functions file (in the order of sql/functions/all.sql) whose checksum differs
#      from the one recorded in auth.schema_function_files, or every file when a migration ran (a
#      migration may have dropped what a file defines); each file replaces its functions in place.
# Everything it runs is plain psql: it writes one psql script and pipes it to psql.
#
# Usage: sql/migrate.sh [conninfo]   (default: $DATABASE_URL, else libpq's PG* environment)
#        sql/migrate.sh --script      print the psql script instead of running it
# The connecting role must be able to create roles and the pgcrypto extension (a superuser, usually).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
print_only=false
if [ "${1:-}" = "--script" ]; then print_only=true; shift; fi
target=${1:-${DATABASE_URL:-}}

checksum() { sha256sum "$1" | cut -d' ' -f1; }
# psql quoting for a file name inside \i '...'
quoted() { printf "'%s'" "${1//\'/\\\'}"; }

migrations=("$here"/migrations/[0-9][0-9][0-9][0-9]_*.sql)
mapfile -t function_files < <(sed -n 's/^\\ir \([A-Za-z0-9_]*\.sql\)$/\1/p' "$here/functions/all.sql")
listed=" ${function_files[*]} "
for file in "$here"/functions/*.sql; do
  name=$(basename "$file")
  # (not `printf | grep -q`: with pipefail, grep leaving early fails the pipeline now and then)
  if [ "$name" != all.sql ] && [[ "$listed" != *" $name "* ]]; then
    echo "migrate: sql/functions/$name is not listed in sql/functions/all.sql" >&2
    exit 1
  fi
done

ledger_values=$(for file in "${migrations[@]}"; do
  name=$(basename "$file"); printf "('%s', '%s'),\n" "${name%%_*}" "$(checksum "$file")"
done | sed '$ s/,$//')

script() {
  cat <<SQL
\\set ON_ERROR_STOP on
\\set QUIET on
set local client_min_messages = warning;
do \$lock\$ begin perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('authgres migrate')); end \$lock\$;
\\set migrated false
select pg_catalog.to_regclass('auth.schema_migrations') is not null as has_ledger,
       exists (select from pg_catalog.pg_attribute
                where attrelid = pg_catalog.to_regclass('auth.schema_migrations') and attname = 'checksum'
                  and not attisdropped) as has_checksums \\gset
\\if :has_checksums
do \$verify\$
declare
  v_changed text;
begin
  select pg_catalog.string_agg(m.version, ', ' order by m.version) into v_changed
    from auth.schema_migrations m
    left join (values
$ledger_values
    ) f (version, checksum) on f.version = m.version
   where m.checksum is not null and m.checksum is distinct from f.checksum;
  if v_changed is not null then
    raise exception using message = 'migrate: applied migrations were changed or removed since: ' || v_changed,
      hint = 'A released migration is never edited: write a new one.';
  end if;
end
\$verify\$;
\\endif
SQL
  for file in "${migrations[@]}"; do
    name=$(basename "$file")
    cat <<SQL
\\set pending true
select pg_catalog.to_regclass('auth.schema_migrations') is not null as has_ledger \\gset
\\if :has_ledger
select not exists (select from auth.schema_migrations where version = '${name%%_*}') as pending \\gset
\\endif
\\if :pending
reset role;
\\i $(quoted "$file")
\\echo migrate: applied $name
\\set migrated true
\\endif
SQL
  done
  cat <<SQL
reset role;
update auth.schema_migrations m set checksum = f.checksum
  from (values
$ledger_values
  ) f (version, checksum)
 where m.version = f.version and m.checksum is null;
SQL
  for name in "${function_files[@]}"; do
    sum=$(checksum "$here/functions/$name")
    cat <<SQL
select :'migrated'::boolean
    or (select checksum from auth.schema_function_files where file = '$name') is distinct from '$sum'
    as pending \\gset
\\if :pending
reset role;
\\i $(quoted "$here/functions/$name")
reset role;
insert into auth.schema_function_files (file, checksum) values ('$name', '$sum')
  on conflict (file) do update set checksum = excluded.checksum, applied_at = pg_catalog.now();
\\echo migrate: applied functions/$name
\\endif
SQL
  done
}

if $print_only; then script; exit 0; fi
psql_cmd=(psql -X -q --single-transaction)
if [ -n "$target" ]; then psql_cmd+=(-d "$target"); fi
script | "${psql_cmd[@]}" -f -
