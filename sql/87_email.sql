-- ============================================================================================
-- invoices — sending invoices by e-mail
-- ============================================================================================
-- send_invoice(ref) (and create_invoice(..., send => true) for an invoice with a customer
-- e-mail) queues one e-mail in the same transaction: the customer gets the hosted link and the
-- PDF. The worker delivers the queue through the relay in invoices.smtp_url with the webhooks'
-- machinery: a lease per attempt, retries after invoices.webhook_retry_schedule, dead after
-- the last one (a relay's permanent 5xx refusal is dead at once). The invoice's sent_at is
-- stamped when the relay accepts the first message. Without a relay the e-mails wait.
--
-- Needs: 05_errors (raise); 10_tables (invoices); 12_outbox (emails, queue_invoice_email,
--   retry_schedule); 15_tenancy (authorize, may_read, readable_merchants, require_merchant, session_scope);
--   50_invoices (finalize_invoice, resolve_invoice); 85_documents (invoice_document)
-- Provides (API): send_invoice(), emails
-- Provides (internal): email_object(), database_setting(), claim_emails(), record_email()

create function invoices_internal.email_object(e invoices_internal.emails) returns jsonb
language plpgsql stable
as $$
begin
  return (select jsonb_build_object('id', e.id, 'invoice_id', e.invoice_id,
             'invoice_number', (select invoice_number from invoices_internal.invoices i
                                 where i.merchant_id = e.merchant_id and i.id = e.invoice_id),
             'to', e.recipient, 'status', e.status, 'attempts', e.attempts,
             'next_attempt_at', e.next_attempt_at, 'last_error', e.last_error,
             'created_at', e.created_at, 'sent_at', e.sent_at));
end
$$;

create function invoices.send_invoice(ref text, to_email text default null) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('send_invoice');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  iid uuid := invoices_internal.resolve_invoice(mid, ref);
  i invoices_internal.invoices;
  e invoices_internal.emails;
begin
  select * into i from invoices_internal.invoices v where v.merchant_id = mid and v.id = iid for update;
  if i.status = 'draft' then
    perform invoices.finalize_invoice(iid::text);
  elsif i.status in ('cancelled', 'expired') then
    perform invoices_internal.raise('23514', format('invoice %s is %s: there is nothing to pay', i.invoice_number, i.status),
      null, 'send an open invoice (draft, pending, partial or overdue) or a paid one as a receipt');
  end if;
  e := invoices_internal.queue_invoice_email(mid, iid, to_email);
  return invoices_internal.email_object(e);
end
$$;

comment on function invoices.send_invoice(text, text) is
  'E-mail the invoice to its customer (or to_email): the hosted link and the PDF, delivered by the worker through invoices.smtp_url with retries (the webhook schedule); a draft is finalized first. The invoice''s sent_at is stamped when the relay accepts it. Returns the queued e-mail {id, invoice_number, to, status, attempts, next_attempt_at, …}; follow it in the emails view.';

create view invoices.emails with (security_barrier) as
select e.merchant_id, e.id, e.invoice_id, i.invoice_number, e.recipient as "to", e.status, e.attempts,
       e.max_attempts, e.next_attempt_at, e.last_error, e.relay_response, e.created_at, e.sent_at
  from invoices_internal.emails e
  join invoices_internal.invoices i on i.merchant_id = e.merchant_id and i.id = e.invoice_id
 where e.merchant_id = any ((select invoices_internal.readable_merchants('emails', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.emails is
  'Invoice e-mails of the current merchant: recipient, status (queued, sending, sent, failed = waiting for a retry, dead), attempts, the last error and the relay''s answer.';

-- The worker's side: claim due e-mails with a lease, each with what the message needs (the
-- invoice document and its PDF, rendered here), then record each attempt.
-- A setting's value for this database as it is now: the worker's session began before a later
-- ALTER DATABASE … SET (such as invoices.public_base_url, in the e-mails' links) and would
-- otherwise keep the old one.
create function invoices_internal.database_setting(setting text) returns text
language sql stable
as $$
  select coalesce(
    (select substr(c, length(setting) + 2)
       from pg_catalog.pg_db_role_setting s, unnest(s.setconfig) c
      where s.setdatabase = (select oid from pg_catalog.pg_database where datname = current_database())
        and s.setrole = 0 and c like setting || '=%'
      limit 1),
    current_setting(setting, true))
$$;

create function invoices_internal.claim_emails(n integer, lease_seconds integer)
returns table (merchant_id uuid, id bigint, recipient text, merchant_name text, document jsonb, pdf bytea)
language plpgsql volatile
as $$
declare
  lease timestamptz := now() + make_interval(secs => lease_seconds);
  g record;
  k record;
  locked bigint[];
begin
  perform set_config('invoices.public_base_url', invoices_internal.database_setting('invoices.public_base_url'), true);
  -- as claim_deliveries: candidates without locks, then each merchant's locked and leased
  for g in select d.merchant_id as mid, array_agg(d.id) as ids
             from (select x.merchant_id, x.id from invoices_internal.emails x
                    where x.status in ('queued', 'failed', 'sending') and x.next_attempt_at <= now()
                      and (x.status <> 'sending' or x.lease_until < now())
                    order by x.next_attempt_at
                    limit n) d
            group by d.merchant_id
  loop
    locked := '{}';
    for k in select x.id, x.status, x.next_attempt_at, x.lease_until from invoices_internal.emails x
              where x.merchant_id = g.mid and x.id = any (g.ids)
              order by x.id
              for update skip locked
    loop
      if k.status in ('queued', 'failed', 'sending') and k.next_attempt_at <= now()
         and (k.status <> 'sending' or k.lease_until < now()) then
        locked := locked || k.id;
      end if;
    end loop;
    return query
    with claimed as (
      update invoices_internal.emails e
         set status = 'sending', lease_until = lease, next_attempt_at = lease
       where e.merchant_id = g.mid and e.id = any (locked)
      returning e.merchant_id, e.id, e.recipient, e.invoice_id)
    select c.merchant_id, c.id, c.recipient, coalesce(i.merchant_snapshot ->> 'name', ''), d.doc,
           invoices_internal.render_invoice_pdf(d.doc)
      from claimed c
      join invoices_internal.invoices i on i.merchant_id = g.mid and i.id = c.invoice_id
      cross join lateral (select invoices_internal.invoice_document(g.mid, c.invoice_id) as doc) d;
  end loop;
end
$$;

create function invoices_internal.record_email(mid uuid, email_id bigint, error text, permanent boolean, relay_response text)
returns void
language plpgsql volatile
as $$
declare
  e invoices_internal.emails;
  schedule interval[] := invoices_internal.retry_schedule();
  retry_at timestamptz;
begin
  select * into e from invoices_internal.emails x where x.merchant_id = mid and x.id = email_id for update;
  if not found or e.status <> 'sending' then
    return;  -- released or recorded already
  end if;
  if error is null then
    update invoices_internal.emails x
       set status = 'sent', attempts = x.attempts + 1, sent_at = now(), lease_until = null,
           last_error = null, relay_response = left(record_email.relay_response, 500)
     where x.merchant_id = mid and x.id = email_id;
    update invoices_internal.invoices i set sent_at = now()
     where i.merchant_id = mid and i.id = e.invoice_id and i.sent_at is null;
  elsif permanent or e.attempts + 1 >= e.max_attempts then
    update invoices_internal.emails x
       set status = 'dead', attempts = x.attempts + 1, lease_until = null, last_error = left(error, 500)
     where x.merchant_id = mid and x.id = email_id;
  else
    retry_at := now() + coalesce(schedule[e.attempts + 1], schedule[cardinality(schedule)]);
    update invoices_internal.emails x
       set status = 'failed', attempts = x.attempts + 1, lease_until = null, last_error = left(error, 500),
           next_attempt_at = retry_at
     where x.merchant_id = mid and x.id = email_id;
  end if;
end
$$;
