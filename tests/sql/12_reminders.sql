-- Reminders (dunning): the schedule, its validation, and the sweep the worker runs
-- (invoices_internal.send_due_reminders, called here directly): once per entry, only the
-- latest entry due after downtime, none before the invoice was finalized, none for an invoice
-- that was never e-mailed, and a queued reminder withdrawn once its invoice is paid.
-- (tests/documents/reminders.sh sends them through the worker and a real SMTP server.)
\set SHOW_CONTEXT never
select invoices.act_as((invoices.create_merchant('Reminder GmbH', 'billing@reminder.test') ->> 'id')::uuid) ->> 'name' as acting;
select reminder_days, reminder_time, time_zone from invoices_internal.merchants where name = 'Reminder GmbH';
-- bad schedules name their field and change nothing
select invoices.set_reminder_schedule('{400}');
select invoices.set_reminder_schedule('{1,1}');
select invoices.set_reminder_schedule('{1,null}');
select invoices.set_reminder_schedule(null);
select invoices.set_reminder_schedule('{0}', time_zone => 'Mars/Olympus_Mons');
select invoices.set_reminder_schedule('{1,2,3,4,5,6,7,8,9,10,11}');
select reminder_days, reminder_time, time_zone from invoices_internal.merchants where name = 'Reminder GmbH';
-- a schedule is sorted; the time and time zone are optional
select invoices.set_reminder_schedule('{7,-3,0}', '08:30', 'Europe/Berlin') - 'merchant_id' as sorted;
select invoices.set_reminder_schedule('{-3,0,7}') - 'merchant_id' as unchanged_time;

-- A: due ten days ago, finalized a month ago, e-mailed: every entry fell due while no sweep ran
select invoices.create_invoice(lines => '[{"description": "Audit", "unit_price": 300}]', currency => 'EUR',
       customer_email => 'dana@example.com', issue_date => current_date - 40, due_date => current_date - 10, send => true) ->> 'invoice_number' as a \gset
-- B: the same, but never e-mailed (sent_at null); C: finalized after its entries fell due
select invoices.create_invoice(lines => '[{"description": "B", "unit_price": 1}]', currency => 'EUR',
       customer_email => 'erin@example.com', issue_date => current_date - 40, due_date => current_date - 10, send => true) ->> 'invoice_number' as b \gset
select invoices.create_invoice(lines => '[{"description": "C", "unit_price": 1}]', currency => 'EUR',
       customer_email => 'finn@example.com', issue_date => current_date - 40, due_date => current_date - 10, send => true) ->> 'invoice_number' as c \gset
update invoices_internal.invoices set finalized_at = now() - interval '30 days', sent_at = now() - interval '30 days'
 where invoice_number = :'a' and merchant_id = current_setting('invoices.merchant_id')::uuid;
update invoices_internal.invoices set finalized_at = now() - interval '30 days'
 where invoice_number = :'b' and merchant_id = current_setting('invoices.merchant_id')::uuid;
update invoices_internal.invoices set sent_at = now()
 where invoice_number = :'c' and merchant_id = current_setting('invoices.merchant_id')::uuid;
-- one reminder: A's latest entry (7 days after), not the three it missed
select invoices_internal.send_due_reminders() as first_sweep;
select invoice_number = :'a' as is_a, days, "to", email_status from invoices.invoice_reminders;
select kind, reminder_days, "to", status from invoices.emails where kind = 'reminder';
-- the next sweeps queue nothing more
select invoices_internal.send_due_reminders() as second_sweep;
select invoices_internal.send_due_reminders() as third_sweep;
-- A is cancelled before the relay took the reminder: it is withdrawn, not sent
select invoices.cancel_invoice(:'a') ->> 'status' as cancelled;
select invoices_internal.send_due_reminders() as after_cancel;
select status, last_error from invoices.emails where kind = 'reminder';
-- reminders off: nothing for a new invoice either
select invoices.set_reminder_schedule('{}') ->> 'reminder_days' as off;
select invoices.create_invoice(lines => '[{"description": "D", "unit_price": 1}]', currency => 'EUR',
       customer_email => 'gus@example.com', issue_date => current_date - 40, due_date => current_date - 10, send => true) ->> 'invoice_number' as d \gset
update invoices_internal.invoices set finalized_at = now() - interval '30 days', sent_at = now() - interval '30 days'
 where invoice_number = :'d' and merchant_id = current_setting('invoices.merchant_id')::uuid;
select invoices_internal.send_due_reminders() as with_no_schedule;
-- another merchant sees none of it
select invoices.act_as((invoices.create_merchant('Other GmbH') ->> 'id')::uuid) is not null as acting;
select count(*) as visible_reminders from invoices.invoice_reminders;
