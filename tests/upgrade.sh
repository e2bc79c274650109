#!/usr/bin/env bash
# Packaging and upgrades: scripts/package.sh builds the installable tarball (library, control,
# SQL of this version, earlier releases, upgrade scripts); a database created at the previous
# release (0.1.0) with data in it is upgraded with ALTER EXTENSION invoices UPDATE through the
# hand-written scripts, keeps its data, and ends with exactly the schema a fresh CREATE
# EXTENSION gives (compared through the catalog).
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/lib.sh"
work=$(mktemp -d); chmod 755 "$work"
trap 'psql_ -d postgres -qc "drop database if exists invoices_upgrade" -c "drop database if exists invoices_fresh" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
previous=$(ls "$ROOT/sql/releases" | sed -n 's/^invoices--\(.*\)\.sql$/\1/p' | sort -V | tail -1)

tarball=$(bash "$ROOT/scripts/package.sh")
listing=$(tar -tzf "$tarball")
for f in lib/invoices.so extension/invoices.control "extension/invoices--$version.sql" \
         "extension/invoices--$previous.sql" "extension/invoices--$previous--$version.sql"; do
  grep -q "$f\$" <<< "$listing" && ok "the package has $f" || bad "the package has $f"
done

psql_ -d postgres -qc "drop database if exists invoices_upgrade" -c "drop database if exists invoices_fresh" \
      -c "create database invoices_upgrade" -c "create database invoices_fresh" >/dev/null
psql_ -d invoices_upgrade -qc "create extension invoices version '$previous'" >/dev/null
expect_eq "installed at the previous release" "$(psql_ -d invoices_upgrade -tAc "select extversion from pg_extension where extname = 'invoices'")" "$previous"
psql_ -d invoices_upgrade -q >/dev/null <<'SQL'
select invoices.act_as((invoices.create_merchant('Before the upgrade') ->> 'id')::uuid);
select invoices.create_invoice(lines => '[{"description": "kept", "unit_price": "12.34"}]', send => true);
-- 0.1.0 let two merchants register one account key
select invoices.create_wallet('BTC', xpub => 'zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs');
select invoices.act_as((invoices.create_merchant('Second on the key') ->> 'id')::uuid);
select invoices.create_wallet('BTC', xpub => 'zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs');
SQL
psql_ -d invoices_upgrade -qc "alter extension invoices update" >/dev/null
expect_eq "ALTER EXTENSION invoices UPDATE reaches $version" \
  "$(psql_ -d invoices_upgrade -tAc "select extversion from pg_extension where extname = 'invoices'")" "$version"
expect_eq "  the data survived" \
  "$(psql_ -d invoices_upgrade -tAc "select invoice_number || ' ' || total || ' ' || status from invoices_internal.invoices")" "INV-0001 12.34 pending"
expect_eq "  the shared account key is routed to its first merchant's wallet" \
  "$(psql_ -d invoices_upgrade -tAc "select k.first_address || ' ' || m.name from invoices_internal.wallet_keys k join invoices_internal.merchants m on m.id = k.merchant_id")" \
  "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu Before the upgrade"
expect_eq "  and a third merchant's create_wallet with it is refused (23505)" \
  "$(psql_ -d invoices_upgrade -tA 2>&1 <<'SQL' | grep -o 'ERROR: .*' | head -1
\set VERBOSITY verbose
select invoices.act_as((invoices.create_merchant('After the upgrade') ->> 'id')::uuid) is not null;
select invoices.create_wallet('BTC', xpub => 'zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs');
SQL
)" "ERROR:  23505: this BTC account key belongs to a wallet of another merchant"
psql_ -d invoices_fresh -qc "create extension invoices" >/dev/null
# pg_dump leaves extension members out, so the schemas are compared through the catalog: every
# member object with its definition, columns, constraints, indexes, triggers, policies, grants
# and comment
fingerprint() {
  psql_ -d "$1" -tA <<'SQL'
with members as (
  select d.classid, d.objid from pg_depend d join pg_extension e on e.oid = d.refobjid
   where e.extname = 'invoices' and d.deptype = 'e'
)
select pg_describe_object(m.classid, m.objid, 0) || ' :: ' || coalesce(obj_description(m.objid, m.classid::regclass::text), '')
  from members m
union all
select 'function ' || p.oid::regprocedure || ' ' || md5(pg_get_functiondef(p.oid)) || ' ' || coalesce(p.proacl::text, '')
  from pg_proc p join members m on m.classid = 'pg_proc'::regclass and m.objid = p.oid
union all
select 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '') || ' rls ' || c.relrowsecurity
       || ' ' || coalesce(md5(pg_get_viewdef(c.oid)), '')
  from pg_class c join members m on m.classid = 'pg_class'::regclass and m.objid = c.oid
union all
select 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '') || ' ' || coalesce(col_description(a.attrelid, a.attnum), '')
  from pg_attribute a join members m on m.classid = 'pg_class'::regclass and m.objid = a.attrelid
  left join pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum
 where a.attnum > 0 and not a.attisdropped
union all
select 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  from pg_constraint where connamespace in ('invoices'::regnamespace, 'invoices_internal'::regnamespace)
union all
select 'index ' || pg_get_indexdef(indexrelid) from pg_index
 where indrelid in (select objid from members where classid = 'pg_class'::regclass)
union all
select 'trigger ' || pg_get_triggerdef(t.oid) from pg_trigger t
 where not t.tgisinternal and t.tgrelid in (select objid from members where classid = 'pg_class'::regclass)
union all
select 'policy ' || schemaname || '.' || tablename || ' ' || policyname || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '')
  from pg_policies where schemaname in ('invoices', 'invoices_internal')
order by 1
SQL
}
fingerprint invoices_upgrade > "$work/upgraded"; fingerprint invoices_fresh > "$work/fresh"
if diff -q "$work/upgraded" "$work/fresh" >/dev/null; then
  ok "  its schema is exactly a fresh $version install's ($(wc -l < "$work/fresh") catalog facts compared)"
else
  bad "  its schema is a fresh install's" "$(diff "$work/upgraded" "$work/fresh" | head -10)"
fi
finish
