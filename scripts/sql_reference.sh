#!/usr/bin/env bash
# docs/sql-reference.md from the catalog: every function and view of schema invoices with its
# signature and its COMMENT ON, grouped by the scope an API key needs for it
# (invoices_internal.access_rules), in a fixed order. It reads a fresh CREATE EXTENSION in a
# scratch database (dropped and created again, dropped at the end), so the reference is the
# extension installed in the cluster: run it after scripts/setup.sh installed the current build.
#
#   bash scripts/sql_reference.sh           # writes docs/sql-reference.md
#   bash scripts/sql_reference.sh --check   # fails with a diff when docs/sql-reference.md drifted
#
# SQL_REFERENCE_DB names the scratch database (default invoices_docs).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export PGCLIENTENCODING=UTF8   # the comments hold → and …, whatever the locale
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"   # no NOTICE from drop if exists

mode=write
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *) die "usage: bash scripts/sql_reference.sh [--check]" ;;
esac
db="${SQL_REFERENCE_DB:-invoices_docs}"
target="$ROOT/docs/sql-reference.md"
tmp=$(mktemp)
cleanup() {
  rm -f "$tmp"
  psql_ -d postgres -c "drop database if exists \"$db\"" >/dev/null 2>&1 || true
}
trap cleanup EXIT

psql_ -d postgres -c "drop database if exists \"$db\"" -c "create database \"$db\"" >/dev/null
psql_ -d "$db" -c "create extension invoices" >/dev/null

# One query writes the whole page; every list is ordered by name in the C collation, so the
# output depends on the catalog only (no OIDs, no locale).
psql_ -d "$db" -tA >"$tmp" <<'SQL'
-- Markdown-safe text: the comments are prose with <placeholders> (an HTML tag to a renderer), {*} and [json]
create function pg_temp.md(t text) returns text language sql immutable
return regexp_replace(coalesce(t, '(no comment)'), '([\\`*<\[\]])', '\\\1', 'g');
create function pg_temp.cell(t text) returns text language sql immutable
return '`' || replace(t, '|', '\|') || '`';

with scope(scope, ord, title, who) as (values
  ('anonymous', 1, 'Anyone (`anonymous`)',
   'No API key needed; a key of any scope may call these too.'),
  ('public_read', 2, 'The payer, or a key with read (`public_read`)',
   'Without a key: one finalized invoice by its slug (what the payer has). With a key: the key needs `read`, and any of the merchant''s invoices by number, id or slug.'),
  ('read', 3, 'Read (`read`)', 'A key with `read` (or `admin`). Views show the key''s merchant only.'),
  ('write', 4, 'Write (`write`)', 'A key with `write` (or `admin`).'),
  ('webhooks', 5, 'Webhooks (`webhooks`)', 'A key with `webhooks` (or `admin`).'),
  ('admin', 6, 'Admin (`admin`)', 'A key with `admin`: keys, wallets and the payment tolerance.'),
  ('sql', 7, 'SQL only (`sql`)',
   'Never over HTTP (403 whatever the key). Operators call these in SQL, as a superuser or a member of `invoices_admin`.'),
  ('unlisted', 8, 'Without an access rule',
   'Not in `invoices_internal.access_rules` (the extension refuses to install such an object, so this stays empty).')
),
obj as (
  select 'function' as kind, p.proname::text as name,
         coalesce(a.scope, 'unlisted') as scope,
         format('%s(%s)', p.proname, pg_get_function_identity_arguments(p.oid)) as heading,
         concat_ws(E'\n',
           pg_temp.md(obj_description(p.oid, 'pg_proc')),
           '',
           'Returns `' || pg_get_function_result(p.oid) || '`. '
             || case coalesce(a.scope, 'unlisted')
                  when 'sql' then 'SQL only.'
                  else case p.provolatile
                         when 'v' then format('HTTP: `POST /rpc/%s` (volatile: PostgREST runs a GET read-only, so its writes get 405).', p.proname)
                         else format('HTTP: `GET` or `POST /rpc/%s` (%s).', p.proname,
                                     case p.provolatile when 's' then 'stable' else 'immutable' end)
                       end
                end,
           case when p.pronargs > 0 then E'\n| parameter | type | default |\n|---|---|---|\n' || (
             select string_agg(format('| %s | %s | %s |',
                                      pg_temp.cell(coalesce(nullif(args.name, ''), '$' || args.n)),
                                      pg_temp.cell(format_type(args.type, null)),
                                      coalesce(pg_temp.cell(pg_get_function_arg_default(p.oid, args.n::int)), 'required')),
                               E'\n' order by args.n)
               from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]),
                           coalesce(p.proargnames, '{}'::text[]),
                           coalesce(p.proargmodes, array_fill('i'::"char", array[cardinality(coalesce(p.proallargtypes, p.proargtypes::oid[]))])))
                      with ordinality as args(type, name, mode, n)
              where args.mode in ('i', 'b', 'v'))
           end) as body
    from pg_proc p
    left join invoices_internal.access_rules a on a.kind = 'function' and a.object = p.proname::text
   where p.pronamespace = 'invoices'::regnamespace and p.prokind = 'f'
  union all
  select 'view', c.relname::text,
         coalesce(a.scope, 'unlisted'),
         c.relname::text,
         concat_ws(E'\n',
           pg_temp.md(obj_description(c.oid, 'pg_class')),
           '',
           case when a.scope = 'anonymous'
                then format('HTTP: `GET /%s?slug=eq.…`: one exact lookup a request (any other filter, or none, is 400). '
                            'Read-only: other methods get 405 (401 without a key).', c.relname)
                else format('HTTP: `GET /%s` with PostgREST''s filters, `select`, `order`, `limit`/`offset`; at most 100 rows '
                            'a response (`db-max-rows`). Read-only: other methods get 405.', c.relname)
           end,
           '',
           '| column | type |',
           '|---|---|',
           (select string_agg(format('| %s | %s |', pg_temp.cell(att.attname), pg_temp.cell(format_type(att.atttypid, att.atttypmod))),
                              E'\n' order by att.attnum)
              from pg_attribute att
             where att.attrelid = c.oid and att.attnum > 0 and not att.attisdropped)) as body
    from pg_class c
    left join invoices_internal.access_rules a on a.kind = 'view' and a.object = c.relname::text
   where c.relnamespace = 'invoices'::regnamespace and c.relkind in ('v', 'm')
),
toc as (
  select string_agg(format('| [%s](#%s) | %s | %s |', s.scope, replace(lower(regexp_replace(s.title, '[^A-Za-z0-9 _-]', '', 'g')), ' ', '-'),
                           coalesce((select string_agg('`' || o.name || '`', ', ' order by o.name collate "C")
                                       from obj o where o.scope = s.scope and o.kind = 'function'), '–'),
                           coalesce((select string_agg('`' || o.name || '`', ', ' order by o.name collate "C")
                                       from obj o where o.scope = s.scope and o.kind = 'view'), '–')),
                    E'\n' order by s.ord) as t
    from scope s
   where exists (select 1 from obj o where o.scope = s.scope)
),
sections as (
  select string_agg(
           format(E'## %s\n\n%s\n\n', s.title, s.who)
           || (select string_agg(format(E'### %s `%s`\n\n%s\n', initcap(o.kind), o.heading, o.body), E'\n'
                                 order by o.kind collate "C", o.name collate "C")
                 from obj o where o.scope = s.scope),
           E'\n' order by s.ord) as t
    from scope s
   where exists (select 1 from obj o where o.scope = s.scope)
),
types as (
  select string_agg(format('| %s | %s | %s |', pg_temp.cell(format_type(t.oid, null)), pg_temp.cell(format_type(t.typbasetype, t.typtypmod)),
                           replace(pg_temp.md(obj_description(t.oid, 'pg_type')), '|', '\|')),
                    E'\n' order by t.typname collate "C") as t
    from pg_type t
   where t.typnamespace = 'invoices'::regnamespace and t.typtype = 'd'
)
select concat_ws(E'\n',
  '# SQL reference',
  '',
  '<!-- Generated by scripts/sql_reference.sh from the catalog. Do not edit: change the COMMENT ON in sql/ and run bash scripts/sql_reference.sh. -->',
  '',
  format('Every function and view of schema `invoices` in version %s, with its signature and its `COMMENT ON`, '
         'read from a fresh `CREATE EXTENSION invoices`. Grouped by the scope an API key needs over HTTP '
         '(`invoices_internal.access_rules`; see [http.md](http.md) for keys, scopes and errors, and '
         '[money.md](money.md) for amounts). In SQL the same objects are `invoices.<name>`; a SQL session acts for the merchant '
         'chosen with `invoices.act_as(merchant_id)`. `ref` arguments take an invoice number, UUID or slug.',
         (select extversion from pg_extension where extname = 'invoices')),
  '',
  format('%s functions, %s views.', (select count(*) from obj where kind = 'function'), (select count(*) from obj where kind = 'view')),
  '',
  '| scope | functions | views |',
  '|---|---|---|',
  (select t from toc),
  '',
  (select t from sections),
  '## Types',
  '',
  'Domains of schema `invoices`: PostgREST answers a function returning one with that media type.',
  '',
  '| domain | over | what |',
  '|---|---|---|',
  (select t from types));
SQL

if [ "$mode" = write ]; then
  mkdir -p "$(dirname "$target")"
  cat "$tmp" >"$target"   # (not cp: the temp file is mode 600)
  log "wrote ${target#"$ROOT"/}"
  exit 0
fi
if ! [ -f "$target" ]; then
  echo "docs/sql-reference.md is missing: run bash scripts/sql_reference.sh" >&2
  exit 1
fi
if ! diff -u --label docs/sql-reference.md --label "catalog (fresh CREATE EXTENSION)" "$target" "$tmp"; then
  echo "docs/sql-reference.md has drifted from the catalog: run bash scripts/sql_reference.sh and commit the result" >&2
  exit 1
fi
