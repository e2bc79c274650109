#!/usr/bin/env bash
# The address carousel under 64 concurrent clients that finalize, cancel and expire invoices
# of one BTC wallet (addresses free again at once: invoices.address_pause_minutes = 0): no
# address is ever held by two live invoices, no deadlock, no error, and derivation has no gaps.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
DB=invoices_carousel
SECONDS_RUN="${CAROUSEL_SECONDS:-10}"
fresh_database $DB
# the race is about handing freed addresses on: they are free again at once here, as for an
# operator who sets the pause to 0 (the default, a day, keeps them for late payments)
psql_ -d $DB -c "alter database $DB set invoices.address_pause_minutes = 0" >/dev/null
MID=$(psql_ -d $DB -tA <<'SQL'
select invoices.act_as((invoices.create_merchant('Carousel race') ->> 'id')::uuid) is not null as acting \gset
select invoices.set_rate('BTC', 'USD', 67000) is not null as rate \gset
select invoices.create_wallet('BTC', xpub => 'zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs', gap_limit => 1000) is not null as wallet \gset
select current_setting('invoices.merchant_id');
SQL
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# finalize and cancel at once
cat > "$work/cancel.sql" <<SQL
select set_config('invoices.merchant_id', '$MID', false);
select invoices.cancel_invoice(invoices.create_invoice(lines => '[{"description": "x", "unit_price": 10}]', asset => 'BTC', send => true) ->> 'id');
SQL
# finalize, let a pending invoice's deadline pass, and sweep (what the worker does)
cat > "$work/expire.sql" <<SQL
select set_config('invoices.merchant_id', '$MID', false);
select invoices.create_invoice(lines => '[{"description": "y", "unit_price": 10}]', asset => 'BTC', send => true) is not null;
update invoices_internal.invoices set expires_at = now()
 where merchant_id = '$MID'
   and id = (select id from invoices_internal.invoices where merchant_id = '$MID' and status = 'pending' order by random() limit 1);
select invoices_internal.expire_and_mark_overdue();
SQL
# finalize a draft and leave it pending for a while
cat > "$work/finalize.sql" <<SQL
select set_config('invoices.merchant_id', '$MID', false);
select invoices.finalize_invoice(invoices.create_invoice(lines => '[{"description": "z", "unit_price": 10}]', asset => 'BTC') ->> 'id');
SQL
if ! "$PG_BIN/pgbench" -n --failures-detailed -c "${CAROUSEL_CLIENTS:-64}" -j 2 -T "$SECONDS_RUN" -f "$work/cancel.sql@5" -f "$work/expire.sql@4" -f "$work/finalize.sql@1" \
       $DB > "$work/pgbench.out" 2>&1; then
  grep -m3 -E "ERROR|error" "$work/pgbench.out"; echo "FAIL: pgbench reported errors (deadlock or error)"; exit 1
fi
grep -E "transactions actually processed|failed transactions|serialization failures|deadlock failures" "$work/pgbench.out" | head -4
if grep -E "number of failed transactions: [1-9]" "$work/pgbench.out" >/dev/null; then
  echo "FAIL: transactions failed (deadlock or serialization)"; exit 1
fi
# (every join names merchant_id too: on Citus rows meet only within one merchant's shard)
# the first four read the carousel's own bookkeeping, which no view shows: an invoice's hold
# on its address (address_id; invoices.invoices.address stays after the release) and the
# assignment history (address_assignments)
checks=$(psql_ -d $DB -tA <<'SQL'
select 'live invoices sharing an address: ' || count(*) from (
  select address_id from invoices_internal.invoices
   where status in ('pending', 'partial', 'paid', 'overdue') and address_id is not null
   group by address_id having count(*) > 1) s;
select 'addresses whose holder is not a live invoice on them: ' || count(*)
  from invoices_internal.addresses a
  left join invoices_internal.invoices i on i.merchant_id = a.merchant_id and i.id = a.invoice_id
 where a.invoice_id is not null
   and (i.address_id is distinct from a.id or i.status not in ('pending', 'partial', 'paid', 'overdue'));
select 'live invoices without their address held: ' || count(*)
  from invoices_internal.invoices i
 where i.status in ('pending', 'partial', 'paid', 'overdue')
   and not exists (select 1 from invoices_internal.addresses a
                    where a.merchant_id = i.merchant_id and a.id = i.address_id and a.invoice_id = i.id);
select 'overlapping holdings of one address: ' || count(*)
  from invoices_internal.address_assignments x
  join invoices_internal.address_assignments y
    on x.merchant_id = y.merchant_id and x.address_id = y.address_id and x.invoice_id <> y.invoice_id
   and x.assigned_at < coalesce(y.released_at, 'infinity') and y.assigned_at < coalesce(x.released_at, 'infinity')
   and x.assigned_at <= y.assigned_at;
select 'gaps in derivation: ' || (max(derivation_index) + 1 - count(*)) from invoices.addresses;
SQL
)
while IFS= read -r line; do expect_eq "${line%: *}" "${line##*: }" 0; done <<< "$checks"
stats=$(psql_ -d $DB -tAc "select (select count(*) from invoices.invoices) || ' invoices, ' || (select count(*) from invoices.addresses) || ' addresses derived, ' || (select sum(times_assigned) from invoices.addresses) || ' assignments'")
echo "$stats"
[ -n "${KEEP_DB:-}" ] || drop_database $DB
finish
