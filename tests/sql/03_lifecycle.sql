-- The status machine is enforced by the database; every transition is stamped and audited.
\set SHOW_CONTEXT never
select invoices.create_merchant('Lifecycle GmbH', default_currency => 'EUR', invoice_prefix => 'LC') ->> 'id' as m \gset
select invoices.act_as(:'m') is not null as acting;
select invoices.create_invoice(lines => '[{"description": "a", "unit_price": 10}]') ->> 'invoice_number' as n1;
select invoices.create_invoice(lines => '[{"description": "b", "unit_price": 20}]') ->> 'slug' as slug2 \gset
select invoices.create_invoice(lines => '[{"description": "c", "unit_price": 30}]') ->> 'id' as id3 \gset

-- draft -> pending (by number), stamping finalized_at
select inv->>'status' as status, inv->>'finalized_at' is not null as finalized_stamped, inv->>'currency' as currency
  from invoices.finalize_invoice('LC-0001') inv;
-- finalizing twice is refused
select invoices.finalize_invoice('LC-0001');
-- ref by slug and by UUID
select invoices.finalize_invoice(:'slug2') ->> 'invoice_number' as finalized_by_slug;
select invoices.cancel_invoice(:'id3') ->> 'status' as cancelled_by_uuid;
-- cancelled is final
select invoices.cancel_invoice(:'id3');
select invoices.finalize_invoice(:'id3');
-- unknown ref
select invoices.invoice_status('LC-9999');
select invoices.invoice_status('');

-- Direct UPDATEs go through the same machine: draft/pending cannot jump to confirmed,
-- nothing returns to draft.
update invoices_internal.invoices set status = 'confirmed' where invoice_number = 'LC-0001';
update invoices_internal.invoices set status = 'draft' where invoice_number = 'LC-0001';
update invoices_internal.invoices set status = 'bogus' where invoice_number = 'LC-0001';
-- amounts are locked once finalized
update invoices_internal.invoices set total = 1.00, subtotal = 1.00 where invoice_number = 'LC-0001';
-- legal path through the machine: pending -> partial -> paid -> confirmed
update invoices_internal.invoices set status = 'partial' where invoice_number = 'LC-0001';
update invoices_internal.invoices set status = 'paid' where invoice_number = 'LC-0001';
update invoices_internal.invoices set status = 'confirmed' where invoice_number = 'LC-0001';
select status, finalized_at <= partially_paid_at and partially_paid_at <= paid_at and paid_at <= confirmed_at as stamped_in_order
  from invoices.invoices where invoice_number = 'LC-0001';
-- a confirmed invoice cannot be cancelled
select invoices.cancel_invoice('LC-0001');
-- pending -> expired, overdue
update invoices_internal.invoices set status = 'expired' where invoice_number = 'LC-0002';
select status, expired_at is not null as expired_stamped from invoices.invoices where invoice_number = 'LC-0002';

-- The audit log has every transition, in order, with its event and actor.
select invoice_number, from_status, to_status, event, actor
  from invoices.audit_log order by id;

-- It is append-only.
update invoices_internal.audit_log set to_status = 'paid';
delete from invoices_internal.audit_log;
truncate invoices_internal.audit_log;
select count(*) as audit_rows_kept from invoices.audit_log;
-- Invoices are never deleted.
delete from invoices_internal.invoices where invoice_number = 'LC-0003';
-- Lines never change once written.
update invoices_internal.invoice_lines set amount = 0
 where invoice_id = (select id from invoices_internal.invoices where invoice_number = 'LC-0001');
