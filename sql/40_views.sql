-- ============================================================================================
-- invoices — views (schema invoices): what a merchant, a data team or PostgREST reads
-- ============================================================================================
-- Each public view shows only the caller's merchant (readable_merchants() over session_scope,
-- evaluated once per query as an init-plan, in the caller's session). Money columns are numeric with the currency's scale (220.00).
--
-- Needs: 10_tables (audit_log, invoice_lines, invoices, quotes); 15_tenancy (readable_merchants,
--   session_scope)
-- Provides (API): invoices, invoice_lines, audit_log
-- Provides (internal): invoice_rows

-- Every invoice with its derived fields, unfiltered: the single definition of the invoice
-- object that the views and the functions' jsonb share. One row of one table, no join (on
-- Citus a read of one merchant's invoice is routed to its shard).
create view invoices_internal.invoice_rows as
select
  i.id, i.merchant_id, i.invoice_number, i.slug, i.status, i.currency,
  i.subtotal, i.tax_rate, i.tax_amount, i.discount_amount, i.total,
  round(i.amount_paid, i.exponent) as amount_paid,
  round(greatest(i.total - i.amount_paid, 0), i.exponent) as amount_due,
  i.lines,
  i.customer_email, i.customer_name, i.customer_company, i.customer_address,
  i.merchant_snapshot as merchant,
  i.issue_date, i.due_date, i.notes, i.metadata, i.order_id,
  rtrim(current_setting('invoices.public_base_url', true), '/') || '/i/' || i.slug as hosted_url,
  rtrim(current_setting('invoices.public_base_url', true), '/') || '/rpc/invoice_pdf?ref=' || i.slug as pdf_url,
  -- payment terms: the latest quote (asset_amount, rate, deadline) and the deposit address
  i.asset,
  i.asset_amount,
  i.rate,
  i.asset_paid,
  i.deposit_address as address,
  i.expires_at,
  i.markup_percent, i.confirmations, i.expiry_minutes, i.pause_minutes,
  i.callback_url, i.attempts_callback, i.success_url, i.failed_url,
  i.overpaid, i.paid_late,
  i.created_at, i.updated_at, i.finalized_at, i.partially_paid_at, i.paid_at, i.confirmed_at,
  i.expired_at, i.overdue_at, i.cancelled_at, i.sent_at
from invoices_internal.invoices i;

create view invoices.invoices with (security_barrier) as
select r.*
  from invoices_internal.invoice_rows r
 where r.merchant_id = any ((select invoices_internal.readable_merchants('invoices', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.invoices is
  'Invoices of the current merchant, one row per invoice, with its lines embedded as jsonb. Filter and page with PostgREST (GET /invoices?status=eq.pending&limit=10). Amounts are numeric in the currency''s exponent; the callback secret is never shown.';

create view invoices.invoice_lines with (security_barrier) as
select l.merchant_id, l.invoice_id, i.invoice_number, l.position, l.description,
       l.quantity, l.unit_price, l.amount, i.currency
  from invoices_internal.invoice_lines l
  join invoices_internal.invoices i on i.merchant_id = l.merchant_id and i.id = l.invoice_id
 where l.merchant_id = any ((select invoices_internal.readable_merchants('invoice_lines', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.invoice_lines is
  'Line items of the current merchant''s invoices: quantity x unit_price = amount, rounded half away from zero to the currency exponent.';

create view invoices.audit_log with (security_barrier) as
select a.merchant_id, a.id, a.invoice_id, i.invoice_number, a.from_status, a.to_status,
       a.event, a.actor, a.at
  from invoices_internal.audit_log a
  join invoices_internal.invoices i on i.merchant_id = a.merchant_id and i.id = a.invoice_id
 where a.merchant_id = any ((select invoices_internal.readable_merchants('audit_log', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.audit_log is
  'Append-only history of every invoice creation and status transition: from, to, the event it emitted, who (API key or database user) and when.';
