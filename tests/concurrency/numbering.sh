#!/usr/bin/env bash
# 16 concurrent creators on one merchant, a quarter of them rolling back: invoice numbers stay
# unique and gapless (1..N with N = committed invoices).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
DB=invoices_concurrency
fresh_database $DB
MID=$(psql_ -d $DB -tAc "select invoices.create_merchant('Concurrent Co') ->> 'id'")
work=$(mktemp -d)
cat > "$work/commit.sql" <<SQL
select invoices.act_as('$MID');
select invoices.create_invoice(lines => '[{"description": "a", "quantity": 2, "unit_price": "9.99"}, {"description": "b", "unit_price": 5}]', tax_rate => 10);
SQL
cat > "$work/rollback.sql" <<SQL
begin;
select invoices.act_as('$MID');
select invoices.create_invoice(lines => '[{"description": "rolled back", "unit_price": 1}]');
rollback;
SQL
"$PG_BIN/pgbench" -n -c 16 -j 2 -t 60 -f "$work/commit.sql@3" -f "$work/rollback.sql@1" "$DB" > "$work/pgbench.out" 2>&1 \
  || { cat "$work/pgbench.out"; echo "FAIL: pgbench reported errors"; exit 1; }
grep -E "number of failed transactions|transactions actually processed" "$work/pgbench.out" || true
# (number_seq, the counter behind the number, is in no view)
result=$(psql_ -d $DB -tAc "
  select count(*) || ' ' || count(distinct invoice_number) || ' ' || coalesce(max(number_seq), 0) || ' ' ||
         (count(*) filter (where invoice_number <> 'INV-' || lpad(number_seq::text, 4, '0')))
    from invoices_internal.invoices")
read -r n distinct maxseq misformatted <<<"$result"
echo "committed invoices: $n, distinct numbers: $distinct, highest number: $maxseq"
rm -rf "$work"
drop_database $DB
check "some invoices were committed" [ "$n" -gt 0 ]
expect_eq "every number is distinct" "$distinct" "$n"
expect_eq "no gap: the highest number is the count" "$maxseq" "$n"
expect_eq "every number reads INV-<4 digits>" "$misformatted" 0
finish
