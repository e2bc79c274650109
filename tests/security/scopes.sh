#!/usr/bin/env bash
# What a key may do does not depend on how the URL spells a name. Every function and view
# PostgREST exposes is called with its name spelled plainly and encoded (%5F, %5f, an encoded
# letter, %00 inside), on PostgREST (:3000) and through the web front (:8080), with no key, a
# key that lacks its scope and a key that has it: 401, 403, and never 401/403. The scopes come
# from invoices_internal.access_rules, which the objects check themselves.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

mid=$(psql_ -tAc "select invoices.create_merchant('Scopes $(date +%s%N)') ->> 'id'")
key() { psql_ -tAc "select invoices_internal.insert_api_key('$mid', '$1', '$2', 100000) ->> 'api_key'"; }
export KEY_read=$(key read '{read}') KEY_write=$(key write '{write}') KEY_webhooks=$(key webhooks '{webhooks}') \
       KEY_readwrite=$(key readwrite '{read,write}') KEY_nonadmin=$(key nonadmin '{read,write,webhooks}') \
       KEY_admin=$(key admin '{admin}')
# the objects PostgREST exposes to invoices_api, their scope and the arguments a call needs
psql_ -tA > "$work/objects.json" <<'SQL'
select jsonb_agg(jsonb_build_object('kind', o.kind, 'name', o.name, 'scope', invoices_internal.needed_scope(o.kind, o.name),
                                    'args', o.args) order by o.kind, o.name)
  from (select 'function' as kind, p.proname::text as name,
               (select coalesce(jsonb_object_agg(a.name, case
                          when a.type = 'uuid' then to_jsonb(gen_random_uuid()::text)
                          when a.type in ('numeric', 'integer', 'bigint') then '1'::jsonb
                          when a.type = 'text[]' then '["admin"]'::jsonb
                          when a.type = 'jsonb' then '{}'::jsonb
                          else '"x"'::jsonb end), '{}')
                  from unnest(p.proargnames[1:p.pronargs - p.pronargdefaults],
                              (p.proargtypes::regtype[])[0:p.pronargs - p.pronargdefaults - 1]::text[]) a(name, type)
                 where a.name is not null) as args
          from pg_proc p
         where p.pronamespace = 'invoices'::regnamespace and has_function_privilege('invoices_api', p.oid, 'execute')
        union all
        select 'view', c.relname::text, null from pg_class c
         where c.relnamespace = 'invoices'::regnamespace and c.relkind = 'v'
           and has_table_privilege('invoices_api', c.oid, 'select')) o
SQL
exec python3 "$here/scopes.py" "$work/objects.json" "$PGRST_URL" "$PUBLIC_URL"
