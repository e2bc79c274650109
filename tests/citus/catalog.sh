#!/usr/bin/env bash
# Scale-out readiness, checked without Citus (issue 10). invoices_internal.distribution_plan says
# how every table is laid out on Citus (tenant: distributed by merchant_id and colocated with
# merchants; reference; routing: a global lookup distributed by its own key; local); this test
# holds the schema to Citus' rules from pg_catalog alone:
#   - every table is in the plan exactly once, with a valid kind, and the plan's call order works
#     (reference tables first, a colocation anchor before the tables colocated with it, a
#     referenced table before the tables referencing it);
#   - a distributed table's distribution column is NOT NULL and hashable, and its primary key
#     and every unique index (partial ones too) and exclusion constraint include it
#     (Citus: "Distributed relations cannot have UNIQUE, EXCLUDE, or PRIMARY KEY constraints
#     that do not include the partition column");
#   - a foreign key between distributed tables joins colocated tables on the distribution
#     column at the same position on both sides, without SET NULL / SET DEFAULT on delete nor
#     CASCADE / SET NULL / SET DEFAULT on update; reference tables reference only reference
#     tables; local tables stay out of foreign keys with Citus tables; routing tables have no
#     foreign key to or from tenant tables;
#   - identity (and nextval) columns of Citus tables are bigint (worker nodes draw from their own
#     ranges of a bigint sequence);
#   - triggers: statement-level triggers other than TRUNCATE would fire once per shard, and a
#     trigger that depends on an extension cannot be distributed;
#   - tenant tables keep row-level security scoped by their distribution column;
#   - the worker's statements (tests/citus/statements.py, reading the functions the worker calls,
#     the triggers of Citus tables and everything they call): row locks only on one merchant's
#     rows and never in a subquery or CTE, no now() inside CASE/COALESCE or SET arithmetic of an
#     UPDATE, no FROM/subquery/CTE in an UPDATE or DELETE that names no merchant, no
#     parameterized LANGUAGE sql function over Citus tables, no writing function called inside
#     a multi-shard read.
# Then a self-check: the schema is copied into a throwaway database, a unique index without
# merchant_id is added to a tenant table there and a claim locking rows in a CTE replaces one of
# the worker's functions, and the checker must flag both.
# Each rule prints one ok line, or one FAIL line per offending table, index or constraint.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
root="$(cd "$here/../.." && pwd)"

# The plan joined with the catalog, shared by every rule.
PLAN="with plan as (
  select p.table_name, p.kind, p.distribution_column, p.colocate_with, p.position,
         pg_catalog.to_regclass(p.table_name) as rel,
         coalesce(p.colocate_with, p.table_name) as grp
    from invoices_internal.distribution_plan p),
dist as (
  select p.*, a.attnum as dattnum, a.atttypid as dtype, a.attcollation as dcoll, a.attnotnull as dnotnull
    from plan p
    join pg_catalog.pg_attribute a on a.attrelid = p.rel and a.attname = p.distribution_column
                                  and a.attnum > 0 and not a.attisdropped
   where p.kind in ('tenant', 'routing')),
tabs as (
  select c.oid as rel, pg_catalog.format('%I.%I', n.nspname, c.relname) as name
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where n.nspname = 'invoices_internal' and c.relkind in ('r', 'p') and not c.relispartition)
"

# rule LABEL SQL: SQL (after the plan CTEs) returns one row per violation, describing it.
rule() {
  local rows
  rows=$(q "$PLAN $2")
  if [ -z "$rows" ]; then
    ok "$1"
  else
    while IFS= read -r r; do bad "$1: $r"; done <<< "$rows"
  fi
}

checks() {
  echo "the distribution plan"
  if [ "$(q "select pg_catalog.to_regclass('invoices_internal.distribution_plan') is not null")" != t ]; then
    bad "view invoices_internal.distribution_plan exists" \
        "create it (table_name, kind, distribution_column, colocate_with, position): nothing else can be checked"
    return 0
  fi
  ok "view invoices_internal.distribution_plan exists"
  rule "the plan has columns table_name, kind, distribution_column, colocate_with text and position integer" "
    select pg_catalog.format('column %s %s is missing', e.col, e.typ)
      from (values ('table_name', 'text'), ('kind', 'text'), ('distribution_column', 'text'),
                   ('colocate_with', 'text'), ('position', 'integer')) e(col, typ)
     where not exists (select 1 from pg_catalog.pg_attribute a
                        where a.attrelid = 'invoices_internal.distribution_plan'::regclass and a.attname = e.col
                          and pg_catalog.format_type(a.atttypid, a.atttypmod) = e.typ)"
  rule "every table of invoices_internal is in the plan (no forgotten table)" "
    select t.name || ' is not in the plan' from tabs t where not exists (select 1 from plan p where p.rel = t.rel)
     order by 1"
  rule "no table is in the plan twice" "
    select pg_catalog.format('%s is in the plan %s times', min(table_name), count(*))
      from plan group by coalesce(rel::oid::text, table_name) having count(*) > 1"
  rule "every table of the plan exists" "
    select table_name || ' does not exist' from plan where rel is null order by position"
  rule "kinds are tenant, reference, routing or local, with a distribution column exactly for tenant and routing" "
    select pg_catalog.format('%s: kind %s is not tenant, reference, routing or local', table_name, coalesce(kind, 'null'))
      from plan where kind is null or kind not in ('tenant', 'reference', 'routing', 'local')
    union all
    select pg_catalog.format('%s: a %s table needs a distribution_column', table_name, kind)
      from plan where kind in ('tenant', 'routing') and distribution_column is null
    union all
    select pg_catalog.format('%s: a %s table has no distribution_column nor colocate_with', table_name, kind)
      from plan where kind in ('reference', 'local') and (distribution_column is not null or colocate_with is not null)
    union all
    select pg_catalog.format('%s has no column %s to distribute by', p.table_name, p.distribution_column)
      from plan p where p.kind in ('tenant', 'routing') and p.rel is not null and p.distribution_column is not null
       and not exists (select 1 from dist d where d.rel = p.rel)"
  rule "positions (the call order) are set and distinct" "
    select pg_catalog.format('position %s is shared by %s', position, string_agg(table_name, ', '))
      from plan where position is not null group by position having count(*) > 1
    union all
    select table_name || ' has no position' from plan where position is null"

  echo "colocation and call order"
  rule "reference tables come before the distributed ones" "
    select pg_catalog.format('%s (reference, %s) comes after %s (%s, %s)', r.table_name, r.position, d.table_name, d.kind, d.position)
      from plan r
      join lateral (select * from plan d where d.kind in ('tenant', 'routing') and d.position < r.position
                     order by d.position limit 1) d on true
     where r.kind = 'reference'"
  rule "colocate_with names an anchor of the plan, earlier, distributed by the same type" "
    select pg_catalog.format('%s: colocate_with %s %s', p.table_name, p.colocate_with, why)
      from (select p.table_name, p.colocate_with,
                   case when a.table_name is null then 'is not a tenant or routing table of the plan'
                        when a.colocate_with is not null then 'is colocated with ' || a.colocate_with || ' itself: name that anchor'
                        when a.position >= p.position then pg_catalog.format('comes later (%s >= %s)', a.position, p.position)
                        when a.dtype <> p.dtype or a.dcoll <> p.dcoll
                          then pg_catalog.format('is distributed by a %s, this table by a %s',
                                                 pg_catalog.format_type(a.dtype, null), pg_catalog.format_type(p.dtype, null))
                   end as why
              from dist p left join dist a on a.table_name = p.colocate_with
             where p.colocate_with is not null) p
     where why is not null"
  rule "tenant tables form one colocation group (merchants' anchor)" "
    select pg_catalog.format('tenant tables are in %s colocation groups: %s', count(distinct grp), string_agg(distinct grp, ', '))
      from plan where kind = 'tenant' having count(distinct grp) > 1"
  rule "routing tables are not colocated with tenant tables" "
    select pg_catalog.format('%s is colocated with tenant table %s: a routing table is distributed by another key', p.table_name, a.table_name)
      from plan p join plan a on a.table_name = p.colocate_with where p.kind = 'routing' and a.kind = 'tenant'"
  rule "a referenced table comes before the tables referencing it" "
    select pg_catalog.format('%s (%s) references %s (%s): distribute the referenced table first (constraint %s)',
                             a.table_name, a.position, b.table_name, b.position, c.conname)
      from pg_catalog.pg_constraint c
      join plan a on a.rel = c.conrelid join plan b on b.rel = c.confrelid
     where c.contype = 'f' and a.rel <> b.rel and a.kind <> 'local' and b.kind <> 'local' and b.position > a.position"

  echo "distribution columns and keys"
  rule "distribution columns are NOT NULL" "
    select pg_catalog.format('%s.%s may be null', table_name, distribution_column) from dist where not dnotnull"
  rule "distribution columns have a hash operator class and a deterministic collation" "
    select pg_catalog.format('%s.%s (%s) has no default hash operator class', d.table_name, d.distribution_column,
                             pg_catalog.format_type(d.dtype, null))
      from dist d
     where not exists (select 1 from pg_catalog.pg_opclass o join pg_catalog.pg_am m on m.oid = o.opcmethod
                        where m.amname = 'hash' and o.opcdefault and o.opcintype = d.dtype)
    union all
    select pg_catalog.format('%s.%s has the non-deterministic collation %s', d.table_name, d.distribution_column, co.collname)
      from dist d join pg_catalog.pg_collation co on co.oid = d.dcoll where not co.collisdeterministic"
  rule "distributed tables have a primary key (shard moves need a replica identity)" "
    select d.table_name || ' has no primary key' from dist d
     where not exists (select 1 from pg_catalog.pg_index i where i.indrelid = d.rel and i.indisprimary)"
  rule "primary keys and unique indexes (partial ones too) include the distribution column" "
    select pg_catalog.format('%s: %s %s (%s)%s lacks %s', d.table_name,
             case when con.conname is not null then 'constraint' else 'unique index' end,
             coalesce(con.conname, ic.relname),
             (select string_agg(pg_catalog.pg_get_indexdef(i.indexrelid, k, true), ', ' order by k)
                from generate_series(1, i.indnkeyatts) k),
             case when i.indpred is not null then ' where ' || pg_catalog.pg_get_expr(i.indpred, i.indrelid, true) else '' end,
             d.distribution_column)
      from dist d
      join pg_catalog.pg_index i on i.indrelid = d.rel and i.indisunique
      join pg_catalog.pg_class ic on ic.oid = i.indexrelid
      left join pg_catalog.pg_constraint con on con.conindid = i.indexrelid and con.conrelid = d.rel
     where not (d.dattnum = any ((i.indkey::int2[])[0:i.indnkeyatts - 1]))
     order by 1"
  rule "exclusion constraints compare the distribution column with =" "
    select pg_catalog.format('%s: exclusion constraint %s does not compare %s with =', d.table_name, c.conname, d.distribution_column)
      from dist d join pg_catalog.pg_constraint c on c.conrelid = d.rel and c.contype = 'x'
     where not exists (select 1 from unnest(c.conkey, c.conexclop) k(att, op) join pg_catalog.pg_operator o on o.oid = k.op
                        where k.att = d.dattnum and o.oprname = '=')"

  echo "foreign keys"
  rule "a foreign key between distributed tables joins colocated tables" "
    select pg_catalog.format('%s: foreign key %s references %s, which is not colocated with it (%s / %s)',
                             d.table_name, c.conname, t.table_name, d.grp, t.grp)
      from dist d join pg_catalog.pg_constraint c on c.conrelid = d.rel and c.contype = 'f'
      join dist t on t.rel = c.confrelid
     where d.grp <> t.grp"
  rule "a foreign key between distributed tables has the distribution column at the same position on both sides" "
    select pg_catalog.format('%s: foreign key %s %s does not pair %s with %s.%s',
                             d.table_name, c.conname, pg_catalog.pg_get_constraintdef(c.oid, true),
                             d.distribution_column, t.table_name, t.distribution_column)
      from dist d join pg_catalog.pg_constraint c on c.conrelid = d.rel and c.contype = 'f'
      join dist t on t.rel = c.confrelid
     where not exists (select 1 from generate_subscripts(c.conkey, 1) k
                        where c.conkey[k] = d.dattnum and c.confkey[k] = t.dattnum)"
  rule "a foreign key including the distribution column has no SET NULL/DEFAULT on delete, no CASCADE/SET NULL/DEFAULT on update" "
    select pg_catalog.format('%s: foreign key %s: %s', d.table_name, c.conname, pg_catalog.pg_get_constraintdef(c.oid, true))
      from dist d join pg_catalog.pg_constraint c on c.conrelid = d.rel and c.contype = 'f'
     where d.dattnum = any (c.conkey) and (c.confdeltype in ('n', 'd') or c.confupdtype in ('c', 'n', 'd'))"
  rule "distributed tables reference only distributed or reference tables" "
    select pg_catalog.format('%s: foreign key %s references %s (%s)', d.table_name, c.conname,
                             c.confrelid::regclass, coalesce(t.kind, 'not in the plan'))
      from dist d join pg_catalog.pg_constraint c on c.conrelid = d.rel and c.contype = 'f'
      left join plan t on t.rel = c.confrelid
     where t.kind is null or t.kind = 'local'"
  rule "reference tables reference only reference tables" "
    select pg_catalog.format('%s: foreign key %s references %s (%s)', p.table_name, c.conname,
                             c.confrelid::regclass, coalesce(t.kind, 'not in the plan'))
      from plan p join pg_catalog.pg_constraint c on c.conrelid = p.rel and c.contype = 'f'
      left join plan t on t.rel = c.confrelid
     where p.kind = 'reference' and t.kind is distinct from 'reference'"
  rule "local tables have no foreign key to or from Citus tables" "
    select pg_catalog.format('foreign key %s of %s (%s) references %s (%s)', c.conname, a.table_name, a.kind, b.table_name, b.kind)
      from pg_catalog.pg_constraint c join plan a on a.rel = c.conrelid join plan b on b.rel = c.confrelid
     where c.contype = 'f' and (a.kind = 'local') <> (b.kind = 'local')"
  rule "routing tables have no foreign key to or from tenant tables" "
    select pg_catalog.format('foreign key %s of %s (%s) references %s (%s)', c.conname, a.table_name, a.kind, b.table_name, b.kind)
      from pg_catalog.pg_constraint c join plan a on a.rel = c.conrelid join plan b on b.rel = c.confrelid
     where c.contype = 'f' and ((a.kind = 'routing' and b.kind = 'tenant') or (a.kind = 'tenant' and b.kind = 'routing'))"

  echo "columns, triggers, policies"
  rule "identity and nextval() columns of Citus tables are bigint" "
    select pg_catalog.format('%s.%s is a %s identity column', p.table_name, a.attname, pg_catalog.format_type(a.atttypid, null))
      from plan p join pg_catalog.pg_attribute a on a.attrelid = p.rel and a.attnum > 0 and not a.attisdropped
     where p.kind <> 'local' and a.attidentity <> '' and a.atttypid <> 'bigint'::regtype
    union all
    select pg_catalog.format('%s.%s (%s) defaults to %s', p.table_name, a.attname, pg_catalog.format_type(a.atttypid, null),
                             pg_catalog.pg_get_expr(ad.adbin, ad.adrelid))
      from plan p join pg_catalog.pg_attribute a on a.attrelid = p.rel and a.attnum > 0 and not a.attisdropped
      join pg_catalog.pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum
     where p.kind <> 'local' and pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) ~ '^nextval\(' and a.atttypid <> 'bigint'::regtype"
  rule "statement-level triggers of distributed tables are TRUNCATE triggers only (others fire once per shard)" "
    select pg_catalog.format('%s: trigger %s is FOR EACH STATEMENT', d.table_name, t.tgname)
      from dist d join pg_catalog.pg_trigger t on t.tgrelid = d.rel and not t.tgisinternal
     where t.tgtype & 1 = 0 and t.tgtype & 32 = 0"
  rule "no trigger of a Citus table depends on an extension (Citus refuses to distribute those)" "
    select pg_catalog.format('%s: trigger %s depends on extension %s', p.table_name, t.tgname, e.extname)
      from plan p join pg_catalog.pg_trigger t on t.tgrelid = p.rel and not t.tgisinternal
      join pg_catalog.pg_depend dep on dep.classid = 'pg_catalog.pg_trigger'::regclass and dep.objid = t.oid and dep.deptype = 'x'
      join pg_catalog.pg_extension e on e.oid = dep.refobjid
     where p.kind <> 'local'"
  local triggers
  triggers=$(q "$PLAN select string_agg(pg_catalog.format('%s (%s)', replace(table_name, 'invoices_internal.', ''), n), ', ' order by position)
                  from (select p.table_name, p.position, count(*) as n from plan p
                          join pg_catalog.pg_trigger t on t.tgrelid = p.rel and not t.tgisinternal
                         where p.kind <> 'local' group by 1, 2) x")
  printf '  info Citus tables with triggers, which need citus.enable_unsafe_triggers = on on every node: %s\n' "${triggers:-none}"
  rule "tenant tables have row-level security scoped by their distribution column" "
    select pg_catalog.format('%s: %s', d.table_name,
             case when not c.relrowsecurity then 'row-level security is off'
                  else 'no policy filters on ' || d.distribution_column end)
      from dist d join pg_catalog.pg_class c on c.oid = d.rel
     where d.kind = 'tenant'
       and (not c.relrowsecurity
            or not exists (select 1 from pg_catalog.pg_policy pol where pol.polrelid = d.rel
                             and pg_catalog.pg_get_expr(pol.polqual, pol.polrelid) ~ ('\\m' || d.distribution_column || '\\M')))"

  echo "the worker's statements (every query it runs routes by merchant_id or runs per shard)"
  local entry lint
  entry=$(grep -ohE 'invoices_internal\.[a-z_]+\(' "$root"/src/worker/*.rs | tr -d '(' | sort -u |
          python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().split()))')
  lint=$(q "select json_build_object(
       'plan', (select json_object_agg(p.table_name, json_build_array(p.kind, p.distribution_column))
                  from invoices_internal.distribution_plan p),
       'functions', (select json_agg(json_build_object('name', n.nspname || '.' || f.proname, 'lang', l.lanname,
                                                       'nargs', f.pronargs, 'volatile', f.provolatile = 'v',
                                                       'src', f.prosrc))
                       from pg_catalog.pg_proc f
                       join pg_catalog.pg_namespace n on n.oid = f.pronamespace
                       join pg_catalog.pg_language l on l.oid = f.prolang
                      where n.nspname in ('invoices', 'invoices_internal')),
       'entry', '$entry'::json,
       'triggers', (select coalesce(json_agg(distinct n.nspname || '.' || f.proname), '[]')
                      from pg_catalog.pg_trigger t
                      join pg_catalog.pg_proc f on f.oid = t.tgfoid
                      join pg_catalog.pg_namespace n on n.oid = f.pronamespace
                     where not t.tgisinternal
                       and t.tgrelid in (select pg_catalog.to_regclass(p.table_name) from invoices_internal.distribution_plan p
                                          where p.kind <> 'local')))" | python3 "$here/statements.py")
  while IFS='|' read -r verdict rule finding; do
    case "$verdict" in
      ok) ok "$rule" ;;
      bad) bad "$rule" "$finding" ;;
      info) printf '  info %s\n' "$rule" ;;
    esac
  done <<< "$lint"
}

echo "the schema of database $PGDATABASE, held to Citus' rules"
checks

echo "self-check: the checker flags a unique index without merchant_id and a multi-shard claim"
if [ "$(q "select pg_catalog.to_regclass('invoices_internal.distribution_plan') is not null")" != t ]; then
  bad "the planted index citus_selfcheck_order_id is flagged in a copy of the schema" "cannot tell without the plan view"
else
  scratch="citus_catalog_check_$$"
  trap 'psql_ -d postgres -c "drop database if exists $scratch" >/dev/null 2>&1 || true' EXIT
  psql_ -d postgres -c "create database $scratch" >/dev/null
  "$PG_BIN/pg_dump" --schema-only --no-owner "$PGDATABASE" | psql_ -d "$scratch" >/dev/null
  # a planted violation: a partial unique index on a tenant table that lacks merchant_id
  psql_ -d "$scratch" -c "create unique index citus_selfcheck_order_id on invoices_internal.invoices (order_id)
                            where order_id is not null" >/dev/null
  # and a worker statement Citus refuses: a multi-shard claim locking rows in a CTE
  psql_ -d "$scratch" -c "create or replace function invoices_internal.release_delivery_leases() returns integer
                            language sql volatile as \$\$
                              with due as (select merchant_id, id from invoices_internal.webhook_deliveries
                                            where status = 'delivering' for update skip locked)
                              update invoices_internal.webhook_deliveries d set status = 'pending'
                                from due where d.merchant_id = due.merchant_id and d.id = due.id
                              returning 1 \$\$" >/dev/null
  copy=$(PGDATABASE="$scratch" checks 2>&1 || true)
  if grep -q 'FAIL .*citus_selfcheck_order_id (order_id) where order_id IS NOT NULL lacks merchant_id' <<< "$copy"; then
    ok "the planted index citus_selfcheck_order_id is flagged in a copy of the schema"
  else
    bad "the planted index citus_selfcheck_order_id is flagged in a copy of the schema" \
        "the checker said: $(grep -c FAIL <<< "$copy" || true) FAIL lines, none naming it"
  fi
  if grep -A1 'FAIL row locks' <<< "$copy" | grep -q 'release_delivery_leases: a row lock inside a subquery or CTE'; then
    ok "the planted claim (FOR UPDATE SKIP LOCKED in a CTE) is flagged in the copy"
  else
    bad "the planted claim (FOR UPDATE SKIP LOCKED in a CTE) is flagged in the copy" \
        "the checker said: $(grep -A1 'FAIL' <<< "$copy" | head -6)"
  fi
fi
finish
