-- ============================================================================================
-- invoices — analytics for data teams
-- ============================================================================================
-- Read-only views over the current merchant's invoices (an admin acting for no merchant sees
-- every merchant: one row group per merchant). Money stays numeric and exact; fiat values of
-- crypto amounts use the quoted rate unless the view says otherwise.
--
-- Needs: 10_tables (currencies, invoices, quotes); 15_tenancy (readable_merchants, session_scope);
--   72_payments (payments: journal_entries);
--   25_rates_quotes (current_rate, rate_observations)
-- Provides (API): receivables_aging, revenue_by_month, payment_conversion, days_to_pay, open_exposure, fx_gain_loss,
--   journal_entries
-- Provides (internal): latest_quotes

-- The latest quote of each invoice (asset amount, rate = currency per 1 asset).
create view invoices_internal.latest_quotes as
select distinct on (q.merchant_id, q.invoice_id)
       q.merchant_id, q.invoice_id, q.asset, q.currency, q.rate, q.asset_amount, q.created_at
  from invoices_internal.quotes q
 order by q.merchant_id, q.invoice_id, q.created_at desc;

create view invoices.receivables_aging with (security_barrier) as
with open as (
  select i.merchant_id, i.currency, greatest(i.total - i.amount_paid, 0) as due,
         case when i.due_date is null or i.due_date >= current_date then 'current'
              when current_date - i.due_date <= 30 then '1-30'
              when current_date - i.due_date <= 60 then '31-60'
              when current_date - i.due_date <= 90 then '61-90'
              else '90+' end as bucket
    from invoices_internal.invoices i
   where i.status in ('pending', 'partial', 'overdue')
     and i.merchant_id = any ((select invoices_internal.readable_merchants('receivables_aging', current_user) from invoices_internal.session_scope)::uuid[])
)
select merchant_id, currency,
       count(*) as open_invoices,
       sum(due) as total_due,
       coalesce(sum(due) filter (where bucket = 'current'), 0) as current,
       coalesce(sum(due) filter (where bucket = '1-30'), 0) as days_1_30,
       coalesce(sum(due) filter (where bucket = '31-60'), 0) as days_31_60,
       coalesce(sum(due) filter (where bucket = '61-90'), 0) as days_61_90,
       coalesce(sum(due) filter (where bucket = '90+'), 0) as days_90_plus
  from open
 group by merchant_id, currency;

comment on view invoices.receivables_aging is
  'Receivables aging per currency: what open invoices (pending, partial, overdue) still owe, by days past their due date: current (not yet due, or no due date), 1-30, 31-60, 61-90, 90+.';

create view invoices.revenue_by_month with (security_barrier) as
select i.merchant_id, date_trunc('month', i.paid_at)::date as month, i.currency, i.asset,
       count(*) as paid_invoices,
       sum(i.amount_paid) as revenue,                         -- in the invoice currency
       sum(i.asset_paid) as asset_received,                   -- in the asset
       sum(round(i.asset_paid * coalesce(q.rate, 1), c.exponent)) as fiat_value_at_quote
  from invoices_internal.invoices i
  join invoices_internal.currencies c on c.code = i.currency
  left join invoices_internal.latest_quotes q on q.merchant_id = i.merchant_id and q.invoice_id = i.id
 where i.status in ('paid', 'confirmed') and i.paid_at is not null
   and i.merchant_id = any ((select invoices_internal.readable_merchants('revenue_by_month', current_user) from invoices_internal.session_scope)::uuid[])
 group by i.merchant_id, date_trunc('month', i.paid_at), i.currency, i.asset;

comment on view invoices.revenue_by_month is
  'Revenue of paid and confirmed invoices by month of payment x invoice currency x asset: invoices, amount paid (currency), asset received, and its value in the invoice currency at the quoted rate.';

create view invoices.payment_conversion with (security_barrier) as
select i.merchant_id, date_trunc('month', i.finalized_at)::date as month,
       count(*) as finalized,
       count(*) filter (where i.status in ('paid', 'confirmed')) as paid,
       count(*) filter (where i.status = 'expired') as expired,
       count(*) filter (where i.status = 'cancelled') as cancelled,
       count(*) filter (where i.status in ('pending', 'partial', 'overdue')) as open,
       round(count(*) filter (where i.status in ('paid', 'confirmed'))::numeric
             / nullif(count(*) filter (where i.status in ('paid', 'confirmed', 'expired')), 0), 4) as paid_vs_expired
  from invoices_internal.invoices i
 where i.finalized_at is not null
   and i.merchant_id = any ((select invoices_internal.readable_merchants('payment_conversion', current_user) from invoices_internal.session_scope)::uuid[])
 group by i.merchant_id, date_trunc('month', i.finalized_at);

comment on view invoices.payment_conversion is
  'Conversion by month of finalization: finalized, paid (paid or confirmed), expired, cancelled, still open, and paid / (paid + expired).';

create view invoices.days_to_pay with (security_barrier) as
with paid as (
  select i.merchant_id, extract(epoch from i.paid_at - i.finalized_at) / 86400 as days
    from invoices_internal.invoices i
   where i.paid_at is not null and i.finalized_at is not null
     and i.merchant_id = any ((select invoices_internal.readable_merchants('days_to_pay', current_user) from invoices_internal.session_scope)::uuid[])
)
select merchant_id,
       count(*) as paid_invoices,
       count(*) filter (where days < 1) as same_day,
       count(*) filter (where days >= 1 and days < 7) as days_1_6,
       count(*) filter (where days >= 7 and days < 30) as days_7_29,
       count(*) filter (where days >= 30) as days_30_plus,
       round(percentile_cont(0.5) within group (order by days)::numeric, 2) as median_days,
       round(percentile_cont(0.9) within group (order by days)::numeric, 2) as p90_days,
       round(avg(days), 2) as mean_days
  from paid
 group by merchant_id;

comment on view invoices.days_to_pay is
  'How long customers take to pay, from finalization to payment: counts per bucket (same day, 1-6, 7-29, 30+ days), median, 90th percentile and mean in days.';

create view invoices.open_exposure with (security_barrier) as
with open as (
  -- per merchant, asset and currency (on Citus: aggregated on each shard)
  select i.merchant_id, q.asset, q.currency, count(*) as open_invoices,
         sum(greatest(q.asset_amount - i.asset_paid, 0)) as outstanding,
         sum(greatest(q.asset_amount - i.asset_paid, 0) * coalesce(q.rate, 1)) as outstanding_at_quote
    from invoices_internal.invoices i
    join invoices_internal.latest_quotes q on q.merchant_id = i.merchant_id and q.invoice_id = i.id
   where i.status in ('pending', 'partial', 'overdue')
     and i.merchant_id = any ((select invoices_internal.readable_merchants('open_exposure', current_user) from invoices_internal.session_scope)::uuid[])
   group by i.merchant_id, q.asset, q.currency
), today as (
  -- today's rate of each pair, as current_rate() gives it (the median of the fresh sources),
  -- joined rather than called per row: a function that reads tables cannot run on a shard
  select distinct r.asset, r.currency, r.median_rate as rate from invoices.rates r
)
select o.merchant_id, o.asset, o.currency, o.open_invoices,
       o.outstanding as outstanding_asset,
       round(o.outstanding_at_quote, c.exponent) as value_at_quote,
       t.rate as rate_today,
       round(o.outstanding * case when o.asset = o.currency then 1 else t.rate end, c.exponent) as value_today
  from open o
  join invoices_internal.currencies c on c.code = o.currency
  left join today t on t.asset = o.asset and t.currency = o.currency;

comment on view invoices.open_exposure is
  'Open exposure per asset and currency: the asset amounts open invoices still expect, their value at the quoted rates, today''s rate (median of fresh sources; null if none) and their value at it.';

create view invoices.fx_gain_loss with (security_barrier) as
select i.merchant_id, i.id as invoice_id, i.invoice_number, q.asset, q.currency,
       i.asset_paid, q.rate as quoted_rate, c.rate as rate_at_confirmation, i.confirmed_at,
       round(i.asset_paid * (c.rate - q.rate), cur.exponent) as gain_loss
  from invoices_internal.invoices i
  join invoices_internal.latest_quotes q on q.merchant_id = i.merchant_id and q.invoice_id = i.id
  join invoices_internal.currencies cur on cur.code = q.currency
  left join lateral (
    select o.rate from invoices_internal.rate_observations o
     where o.asset = q.asset and o.currency = q.currency and o.observed_at <= i.confirmed_at
     order by o.observed_at desc limit 1) c on true
 where i.status = 'confirmed' and q.rate is not null
   and i.merchant_id = any ((select invoices_internal.readable_merchants('fx_gain_loss', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.fx_gain_loss is
  'FX gain or loss of each confirmed crypto-paid fiat invoice: the asset received valued at the last rate observed before confirmation minus its value at the quoted rate (positive: the crypto was worth more when it arrived).';

-- The books, double entry: what an accountant imports at month end (issue 25). Each entry is
-- balanced (its debits equal its credits, in its currency):
--   invoice       when finalized: Dr accounts_receivable total; Cr revenue (total - tax),
--                 Cr tax_payable tax
--   cancellation  a finalized invoice cancelled: the invoice entry reversed
--   void          a finalized invoice voided (issued by mistake): reversed the same way
--   write_off     an invoice marked uncollectible: Dr bad_debt / Cr accounts_receivable for
--                 what was still due
--   recovery      a written-off invoice paid in full after all: the write-off reversed
--   payment       a confirmed payment applied to its invoice, valued at the invoice's quote:
--                 Dr crypto:<asset>; Cr accounts_receivable up to the total, Cr customer_credit
--                 for what goes past it (an over-payment)
--   fx            the same payment's value at the rate observed when it confirmed, against the
--                 quote: Dr crypto:<asset> / Cr fx_gain, or Dr fx_loss / Cr crypto:<asset>
--   unapplied     a confirmed payment that no open invoice took (cancelled invoice, other
--                 asset, no invoice): Dr crypto:<asset> / Cr unapplied_receipts
-- A payment's share of its invoice follows the settlement rule (docs/money.md): the invoice
-- counts round(total x paid / due) as paid, so each payment is the step of that running figure.
create view invoices.journal_entries with (security_barrier) as
with inv as (
  select i.merchant_id, i.id, i.invoice_number, i.currency, i.total, i.tax_amount, i.status,
         i.finalized_at, i.cancelled_at, i.voided_at, i.marked_uncollectible_at, i.written_off, i.paid_at
    from invoices_internal.invoices i
   where i.finalized_at is not null
     and i.merchant_id = any ((select invoices_internal.readable_merchants('journal_entries', current_user) from invoices_internal.session_scope)::uuid[])
), paid as (
  select p.merchant_id, p.id, p.invoice_id, i.invoice_number, p.asset, p.amount, p.chain, p.txid,
         coalesce(p.confirmed_at, p.detected_at) as at,
         coalesce(i.currency, p.asset) as currency, coalesce(cur.exponent, 18) as exponent,
         i.total, i.asset_amount as due, i.rate as quote_rate,
         (i.id is not null and i.status not in ('draft', 'cancelled', 'void') and p.asset = i.asset
          and coalesce(i.asset_amount, 0) > 0) as applied
    from invoices_internal.payments p
    left join invoices_internal.invoices i on i.merchant_id = p.merchant_id and i.id = p.invoice_id
    left join invoices_internal.currencies cur on cur.code = i.currency
   where p.status = 'confirmed'
     and p.merchant_id = any ((select invoices_internal.readable_merchants('journal_entries', current_user) from invoices_internal.session_scope)::uuid[])
), steps as (
  -- the invoice's paid figure after each applied payment, in payment order
  select x.*,
         case when x.currency = x.asset then x.cum else round(x.total * x.cum / x.due, x.exponent) end as counted
    from (select p.*, sum(p.amount) over (partition by p.merchant_id, p.invoice_id, p.applied order by p.id) as cum
            from paid p) x
), valued as (
  select s.*,
         least(s.counted, s.total)
           - coalesce(lag(least(s.counted, s.total)) over w, 0) as to_receivable,
         (s.counted - least(s.counted, s.total))
           - coalesce(lag(s.counted - least(s.counted, s.total)) over w, 0) as to_credit,
         case when s.currency = s.asset then s.amount
              else round(s.amount * coalesce(o.rate, s.quote_rate), s.exponent) end as value_at_receipt
    from steps s
    left join lateral (
      select r.rate from invoices_internal.rate_observations r
       where s.currency <> s.asset and r.asset = s.asset and r.currency = s.currency and r.observed_at <= s.at
       order by r.observed_at desc limit 1) o on true
  window w as (partition by s.merchant_id, s.invoice_id, s.applied order by s.id)
), lines as (
  select i.merchant_id, 'invoice:' || i.id as entry_id, i.finalized_at as entry_date, 'invoice' as entry_type,
         i.id as invoice_id, i.invoice_number, l.*, i.currency, null::text as asset, null::numeric as asset_amount,
         'invoice ' || i.invoice_number as memo
    from inv i,
         lateral (values (1, 'accounts_receivable', i.total, 0::numeric),
                         (2, 'revenue', 0, i.total - i.tax_amount),
                         (3, 'tax_payable', 0, i.tax_amount)) l(line, account, debit, credit)
  union all
  -- the invoice entry reversed: cancelled, or voided
  select i.merchant_id, r.kind || ':' || i.id, r.at, r.kind, i.id, i.invoice_number, l.*,
         i.currency, null, null, 'invoice ' || i.invoice_number || ' ' || r.done
    from inv i,
         lateral (select case when i.status = 'void' then 'void' else 'cancellation' end as kind,
                         case when i.status = 'void' then i.voided_at else i.cancelled_at end as at,
                         case when i.status = 'void' then 'voided' else 'cancelled' end as done) r,
         lateral (values (1, 'revenue', i.total - i.tax_amount, 0::numeric),
                         (2, 'tax_payable', i.tax_amount, 0),
                         (3, 'accounts_receivable', 0, i.total)) l(line, account, debit, credit)
   where i.status in ('cancelled', 'void') and r.at is not null
  union all
  select i.merchant_id, 'write_off:' || i.id, i.marked_uncollectible_at, 'write_off', i.id, i.invoice_number, l.*,
         i.currency, null, null, 'invoice ' || i.invoice_number || ' written off as uncollectible'
    from inv i,
         lateral (values (1, 'bad_debt', i.written_off, 0::numeric),
                         (2, 'accounts_receivable', 0, i.written_off)) l(line, account, debit, credit)
   where i.marked_uncollectible_at is not null and i.written_off is not null
  union all
  select i.merchant_id, 'recovery:' || i.id, i.paid_at, 'recovery', i.id, i.invoice_number, l.*,
         i.currency, null, null, 'invoice ' || i.invoice_number || ' paid after the write-off'
    from inv i,
         lateral (values (1, 'accounts_receivable', i.written_off, 0::numeric),
                         (2, 'bad_debt', 0, i.written_off)) l(line, account, debit, credit)
   where i.marked_uncollectible_at is not null and i.written_off is not null
     and i.status in ('paid', 'confirmed') and i.paid_at > i.marked_uncollectible_at
  union all
  select v.merchant_id, 'payment:' || v.id, v.at, 'payment', v.invoice_id, v.invoice_number, l.*,
         v.currency, v.asset, case when l.line = 1 then v.amount end, v.chain || ' ' || v.txid
    from valued v,
         lateral (values (1, 'crypto:' || v.asset, v.to_receivable + v.to_credit, 0::numeric),
                         (2, 'accounts_receivable', 0, v.to_receivable),
                         (3, 'customer_credit', 0, v.to_credit)) l(line, account, debit, credit)
   where v.applied
  union all
  select v.merchant_id, 'fx:' || v.id, v.at, 'fx', v.invoice_id, v.invoice_number, l.*,
         v.currency, v.asset, null, 'rate at confirmation against the quote, ' || v.chain || ' ' || v.txid
    from valued v,
         lateral (select v.value_at_receipt - (v.to_receivable + v.to_credit) as diff) d,
         lateral (values (1, case when d.diff > 0 then 'crypto:' || v.asset else 'fx_loss' end, abs(d.diff), 0::numeric),
                         (2, case when d.diff > 0 then 'fx_gain' else 'crypto:' || v.asset end, 0, abs(d.diff))) l(line, account, debit, credit)
   where v.applied and d.diff <> 0
  union all
  select v.merchant_id, 'unapplied:' || v.id, v.at, 'unapplied', v.invoice_id, v.invoice_number, l.*,
         v.currency, v.asset, case when l.line = 1 then v.amount end, v.chain || ' ' || v.txid
    from valued v,
         lateral (values (1, 'crypto:' || v.asset, v.value_at_receipt, 0::numeric),
                         (2, 'unapplied_receipts', 0, v.value_at_receipt)) l(line, account, debit, credit)
   where not v.applied
)
select merchant_id, entry_id, entry_date, entry_type, invoice_id, invoice_number, line, account,
       debit, credit, currency, asset, asset_amount, memo
  from lines
 where debit <> 0 or credit <> 0;

comment on view invoices.journal_entries is
  'Double-entry journal of the current merchant: for each finalized invoice (Dr accounts_receivable, Cr revenue and tax_payable), its cancellation or void (reversed), its write-off when marked uncollectible (Dr bad_debt) and the recovery if it is paid after all, each confirmed payment at the quoted value (Dr crypto:<asset>, Cr accounts_receivable, Cr customer_credit for an over-payment), its FX difference at the rate observed at confirmation (fx_gain / fx_loss) and unapplied receipts. Every entry_id balances: sum(debit) = sum(credit), in its currency. Export as CSV with Accept: text/csv.';
