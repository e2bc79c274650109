-- ============================================================================================
-- invoices — analytics for data teams
-- ============================================================================================
-- Read-only views over the current merchant's invoices (an admin acting for no merchant sees
-- every merchant: one row group per merchant). Money stays numeric and exact; fiat values of
-- crypto amounts use the quoted rate unless the view says otherwise.
--
-- Needs: 10_tables (currencies, invoices, quotes); 15_tenancy (readable_merchants, session_scope);
--   25_rates_quotes (current_rate, rate_observations)
-- Provides (API): receivables_aging, revenue_by_month, payment_conversion, days_to_pay, open_exposure, fx_gain_loss
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
