-- ============================================================================================
-- invoices — merchants and the invoice lifecycle (schema invoices)
-- ============================================================================================
-- create_merchant, create_invoice, finalize_invoice, cancel_invoice, requote_invoice and
-- invoice_status: the functions a merchant calls, over the tables, the status machine, quotes
-- and the address carousel of the files before.
--
-- Needs: 05_errors (raise, raise_error); 10_tables (invoice_lines, invoices, merchants);
--   12_outbox (emails, retry_count); 15_tenancy (authorize, current_merchant_id,
--   require_merchant); 20_api_keys (idempotent_replay, idempotent_store, insert_api_key);
--   30_wallets (open_for_payment); 40_views (invoice_rows)
-- Provides (API): create_merchant(), create_invoice(), finalize_invoice(), cancel_invoice(), invoice_status(), requote_invoice()
-- Provides (internal): resolve_invoice(), invoice_by_slug(), document_invoice(), invoice_object(), set_status()

-- --------------------------------------------------------------------------------------------
-- Merchants
-- --------------------------------------------------------------------------------------------
create function invoices.create_merchant(
  name             text,
  email            text default null,
  address          text default null,
  default_currency text default 'USD',
  invoice_prefix   text default 'INV'
) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_merchant');  -- first: the caller's scope
  p jsonb;
  m invoices_internal.merchants;
begin
  p := invoices_internal.prepare_merchant(jsonb_build_object(
         'name', name, 'email', email, 'address', address,
         'default_currency', default_currency, 'invoice_prefix', invoice_prefix));
  insert into invoices_internal.merchants (name, email, address, default_currency, invoice_prefix)
  values (p->>'name', p->>'email', p->>'address', p->>'default_currency', p->>'invoice_prefix')
  returning * into m;
  return jsonb_build_object(
    'id', m.id, 'name', m.name, 'email', m.email, 'address', m.address,
    'default_currency', m.default_currency, 'invoice_prefix', m.invoice_prefix,
    'created_at', m.created_at,
    'api_key', invoices_internal.insert_api_key(m.id, 'Default key', '{read,write,webhooks,admin}') ->> 'api_key');
end
$$;

comment on function invoices.create_merchant(text, text, text, text, text) is
  'Admin (SQL only): create a merchant. default_currency is an ISO 4217 code (default USD); invoice_prefix gives numbers like INV-0001 (default INV). Returns the merchant as jsonb with api_key: its first API key (all scopes), shown this once.';

-- How the current merchant is paid by bank transfer, set once: BTPay invoices that take a wire
-- (payment_methods ["wire"]) print it on the invoice, its PDF and its hosted page.
create function invoices.set_bank_instructions(instructions text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('set_bank_instructions');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
begin
  if instructions is not null and length(btrim(instructions)) not between 1 and 2000 then
    perform invoices_internal.raise('22023', 'invalid bank instructions',
      '{"errors":[{"field":"instructions","message":"must be 1 to 2000 characters, or null to remove them"}]}',
      'set_bank_instructions(E''IBAN DE89 3704 0044 0532 0130 00\nBIC COBADEFFXXX'')');
  end if;
  update invoices_internal.merchants set bank_instructions = nullif(btrim(instructions), '') where id = mid;
  return jsonb_build_object('merchant_id', mid, 'bank_instructions', nullif(btrim(instructions), ''));
end
$$;
comment on function invoices.set_bank_instructions(text) is
  'The current merchant''s bank-transfer instructions (IBAN, BIC, reference…), set once: invoices created with payment_methods including "wire" (BTPay''s POST /api/v1/invoices) print them on the invoice, its PDF and its hosted page. Null removes them.';

-- --------------------------------------------------------------------------------------------
-- Invoices
-- --------------------------------------------------------------------------------------------
-- ref = invoice number (INV-0001), UUID or slug, within the caller's merchant.
create function invoices_internal.resolve_invoice(mid uuid, ref text) returns uuid
language plpgsql stable
as $$
declare
  found_id uuid;
  as_uuid uuid;
begin
  if ref is null or btrim(ref) = '' then
    perform invoices_internal.raise('22023', 'invalid invoice reference: ref is required',
      '{"errors":[{"field":"ref","message":"is required"}]}',
      'pass the invoice number (INV-0001), its id or its slug');
  end if;
  if ref ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' then
    as_uuid := ref::uuid;
    select id into found_id from invoices_internal.invoices where merchant_id = mid and id = as_uuid;
  else
    select id into found_id from invoices_internal.invoices
     where merchant_id = mid and (invoice_number = btrim(ref) or slug = btrim(ref));
  end if;
  if found_id is null then
    perform invoices_internal.raise('P0002', format('invoice "%s" not found', ref), null,
      'pass the invoice number (INV-0001), its id or its slug');
  end if;
  return found_id;
end
$$;

-- The invoice with this slug, any merchant's (null when there is none): the routing table,
-- then the invoice by its key. Two statements, each on one shard on Citus.
create function invoices_internal.invoice_by_slug(slug text) returns invoices_internal.invoices
language plpgsql stable
as $$
declare
  owner invoices_internal.invoice_slugs;
  i invoices_internal.invoices;
begin
  select * into owner from invoices_internal.invoice_slugs s where s.slug = invoice_by_slug.slug;
  if found then
    select * into i from invoices_internal.invoices v where v.merchant_id = owner.merchant_id and v.id = owner.invoice_id;
  end if;
  return i;
end
$$;

-- The invoice a document or status poll is for: the caller's own (number, id or slug), or for anyone a
-- finalized invoice by slug or id. Unknown, draft or foreign → 404, the same for all three.
create function invoices_internal.document_invoice(ref text, out merchant_id uuid, out id uuid)
language plpgsql stable
as $$
declare
  mid uuid := invoices_internal.current_merchant_id();
  r text := btrim(coalesce(ref, ''));
begin
  if mid is not null then
    document_invoice.merchant_id := mid;
    document_invoice.id := invoices_internal.resolve_invoice(mid, ref);
    return;
  end if;
  if r = '' then
    perform invoices_internal.raise('22023', 'invalid invoice reference: ref is required',
      '{"errors":[{"field":"ref","message":"is required"}]}', 'pass the invoice''s slug (from its hosted URL)');
  end if;
  if r ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' then
    select i.merchant_id, i.id into document_invoice.merchant_id, document_invoice.id
      from invoices_internal.invoices i where i.id = r::uuid and i.finalized_at is not null;
  else
    select i.merchant_id, i.id into document_invoice.merchant_id, document_invoice.id
      from invoices_internal.invoice_by_slug(r) i where i.finalized_at is not null;
  end if;
  if document_invoice.id is null then
    perform invoices_internal.raise('P0002', format('invoice "%s" not found', r), null,
      'without an API key an invoice is found by its slug (from its hosted URL) once it is finalized');
  end if;
end
$$;

-- The invoice object: the row of the invoices view with amounts as strings in the currency's
-- exponent (the fields are listed in docs/sql-reference.md, view invoices.invoices).
create function invoices_internal.invoice_object(mid uuid, invoice_id uuid) returns jsonb
language plpgsql stable
as $$
declare
  obj jsonb;
begin
  -- plpgsql (not sql) so the plan is cached for the session.
  select to_jsonb(r) || jsonb_build_object(
           'subtotal', r.subtotal::text, 'tax_rate', r.tax_rate::text,
           'tax_amount', r.tax_amount::text, 'discount_amount', r.discount_amount::text,
           'total', r.total::text, 'amount_paid', r.amount_paid::text,
           'amount_due', r.amount_due::text, 'markup_percent', r.markup_percent::text)
    into obj
    from invoices_internal.invoice_rows r
   where r.merchant_id = mid and r.id = invoice_id;
  return obj;
end
$$;

-- Changes an invoice's status through the state machine; the same status twice is refused
-- too (cancelling a cancelled invoice is an error, not a silent success).
create function invoices_internal.set_status(mid uuid, invoice_id uuid, to_status text) returns void
language plpgsql volatile
as $$
declare
  cur text;
begin
  select status into cur from invoices_internal.invoices
   where merchant_id = mid and id = invoice_id
   for update;
  -- checked here too (the trigger is the guard) so the HTTP door answers with its status
  if invoices_internal.transition_problem(cur, to_status) is not null then
    perform invoices_internal.raise_error(invoices_internal.transition_problem(cur, to_status));
  end if;
  update invoices_internal.invoices set status = to_status, updated_at = now()
   where merchant_id = mid and id = invoice_id;
end
$$;

create function invoices.create_invoice(
  lines             jsonb   default null,
  currency          text    default null,
  customer_email    text    default null,
  customer_name     text    default null,
  customer_company  text    default null,
  customer_address  text    default null,
  tax_rate          numeric default null,
  discount_amount   numeric default null,
  issue_date        date    default null,
  due_date          date    default null,
  notes             text    default null,
  metadata          jsonb   default null,
  asset             text    default null,
  markup_percent    numeric default null,
  confirmations     integer default null,
  expiry_minutes    integer default null,
  pause_minutes     integer default null,
  callback_url      text    default null,
  callback_secret   text    default null,
  attempts_callback integer default null,
  success_url       text    default null,
  failed_url        text    default null,
  order_id          text    default null,
  send              boolean default false,
  items             jsonb   default null,
  to_email          text    default null,
  to_name           text    default null
) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_invoice');  -- first: the caller's scope
  mid uuid := nullif(current_setting('invoices.merchant_id', true), '')::uuid;
  m record;
  args jsonb;
  replay jsonb;
  p jsonb;
  new_id uuid := invoices_internal.uuid_v7();
  new_slug text := invoices_internal.new_slug();
  idempotent boolean := current_setting('invoices.idempotency_key', true) <> '';
  new_status text := case when send then 'pending' else 'draft' end;
  new_number text;
  obj jsonb;
begin
  if mid is null then
    perform invoices_internal.require_merchant();  -- raises the 42501 "no merchant selected"
  end if;
  -- Living Invoices aliases: items = lines, to_email = customer_email, to_name = customer_name.
  if lines is not null and items is not null then
    perform invoices_internal.raise('22023', 'invalid invoice: give lines or items, not both',
      '{"errors":[{"field":"items","message":"is an alias of lines: give one of them"}]}',
      'send the line items once, as lines');
  end if;
  args := jsonb_build_object(
         'lines', coalesce(lines, items),
         'currency', currency,
         'customer_email', coalesce(customer_email, to_email),
         'customer_name', coalesce(customer_name, to_name),
         'customer_company', customer_company, 'customer_address', customer_address,
         'tax_rate', tax_rate, 'discount_amount', discount_amount,
         'issue_date', coalesce(issue_date, current_date), 'due_date', due_date,
         'notes', notes, 'metadata', metadata, 'order_id', order_id,
         'asset', asset, 'markup_percent', markup_percent, 'confirmations', confirmations,
         'expiry_minutes', expiry_minutes, 'pause_minutes', pause_minutes,
         'callback_url', callback_url, 'callback_secret', callback_secret,
         'attempts_callback', attempts_callback, 'success_url', success_url, 'failed_url', failed_url);
  -- Idempotency-Key: a replay returns the first response without creating anything.
  if idempotent then
    replay := invoices_internal.idempotent_replay(mid, 'create_invoice', args || jsonb_build_object('send', send));
    if replay is not null then
      return replay;
    end if;
  end if;

  -- Gapless per-merchant number: the row lock is held to commit; a rollback returns the number.
  -- The same statement reads what the invoice copies from its merchant.
  update invoices_internal.merchants x set next_invoice_number = x.next_invoice_number + 1
   where x.id = mid
   returning x.next_invoice_number - 1 as seq, x.name, x.email, x.address, x.default_currency, x.invoice_prefix
    into m;
  if not found then
    perform invoices_internal.raise('42501', format('merchant %s does not exist', mid), null,
      'act as an existing merchant: invoices.act_as(merchant_id)');
  end if;
  new_number := invoices_internal.format_invoice_number(m.invoice_prefix, m.seq);
  if currency is null then
    args := args || jsonb_build_object('currency', m.default_currency);
  end if;
  p := invoices_internal.prepare_new_invoice(args);
  if p ? 'error' then
    perform invoices_internal.raise_error(p);
  end if;

  -- The invoice, its lines and, when it is sent, the e-mail to the customer (the worker sends
  -- it): a statement each, each naming the merchant (on Citus: its shard, and no other node).
  -- The prepared object's keys are the column names: one jsonb_populate_record reads them
  -- instead of a cast per column; the columns decided here are given as they are (merging
  -- them into the object first would sort ~60 keys again).
  insert into invoices_internal.invoices (merchant_id, id, number_seq, invoice_number, slug, status,
    currency, exponent, subtotal, discount_amount, tax_rate, tax_amount, total, amount_paid, asset_paid,
    customer_email, customer_name, customer_company, customer_address, merchant_snapshot,
    issue_date, due_date, notes, metadata, order_id, asset, markup_percent, confirmations,
    expiry_minutes, pause_minutes, callback_url, callback_secret, attempts_callback, success_url,
    failed_url, expires_at, overpaid, paid_late, created_at, updated_at, lines)
  select mid, new_id, m.seq, new_number, new_slug, new_status,
         r.currency, r.exponent, r.subtotal, r.discount_amount, r.tax_rate, r.tax_amount, r.total, 0, 0,
         r.customer_email, r.customer_name, r.customer_company, r.customer_address,
         jsonb_build_object('name', m.name, 'email', m.email, 'address', m.address),
         r.issue_date, r.due_date, r.notes, r.metadata, r.order_id, r.asset, r.markup_percent, r.confirmations,
         r.expiry_minutes, r.pause_minutes, r.callback_url, r.callback_secret, r.attempts_callback, r.success_url,
         r.failed_url, r.expires_at, false, false, now(), now(),
         r.lines   -- as the invoice object shows them (amounts as strings), prepared that way
    from jsonb_populate_record(null::invoices_internal.invoices, p) r;
  insert into invoices_internal.invoice_lines (merchant_id, invoice_id, position, description, quantity, unit_price, amount)
  select mid, new_id, l.n, l.description, l.quantity, l.unit_price, l.amount
    from rows from (jsonb_to_recordset(p->'lines')
                      as (description text, quantity numeric, unit_price numeric, amount numeric))
         with ordinality l(description, quantity, unit_price, amount, n);
  if send and p->>'customer_email' is not null then
    insert into invoices_internal.emails (merchant_id, invoice_id, recipient, max_attempts)
    values (mid, new_id, p->>'customer_email', invoices_internal.retry_count() + 1);
  end if;
  insert into invoices_internal.invoice_slugs (slug, merchant_id, invoice_id) values (new_slug, mid, new_id);

  if send and p->>'asset' is not null then
    perform invoices_internal.open_for_payment(mid, new_id);
    obj := invoices_internal.invoice_object(mid, new_id);
  else
    -- The invoice object of the row just written, without reading it back: what invoice_rows
    -- shows for an invoice with no quote, payment or address yet (a regression test holds the
    -- two equal).
    obj := (p - '{exponent,currency_kind,callback_secret}'::text[]) || jsonb_build_object(
      'id', new_id, 'merchant_id', mid,
      'invoice_number', new_number, 'slug', new_slug, 'status', new_status,
      'merchant', jsonb_build_object('name', m.name, 'email', m.email, 'address', m.address),
      'hosted_url', rtrim(current_setting('invoices.public_base_url', true), '/') || '/i/' || new_slug,
      'pdf_url', rtrim(current_setting('invoices.public_base_url', true), '/') || '/rpc/invoice_pdf?ref=' || new_slug,
      'created_at', now(), 'updated_at', now(), 'finalized_at', case when send then now() end);
  end if;
  if idempotent then
    return invoices_internal.idempotent_store(mid, obj);
  end if;
  return obj;
end
$$;

comment on function invoices.create_invoice(jsonb, text, text, text, text, text, numeric, numeric, date, date, text, jsonb, text, numeric, integer, integer, integer, text, text, integer, text, text, text, boolean, jsonb, text, text) is
  'Create an invoice for the current merchant. lines: [{description, quantity (default 1), unit_price}] (1-100; items is an alias), amounts as numbers or strings. currency defaults to the merchant''s. Totals are exact: line = quantity x unit_price rounded half away from zero to the currency exponent, tax = (subtotal - discount) x tax_rate / 100. send => true finalizes at once. Bad input raises 22023 with every bad field in the detail. Returns the invoice object.';

create function invoices.finalize_invoice(ref text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('finalize_invoice');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  inv_id uuid;
  inv record;
  replay jsonb := invoices_internal.idempotent_replay(mid, 'finalize_invoice', jsonb_build_object('ref', ref));
begin
  if replay is not null then
    return replay;
  end if;
  inv_id := invoices_internal.resolve_invoice(mid, ref);
  select status, invoice_number into inv from invoices_internal.invoices
   where merchant_id = mid and id = inv_id for update;
  if inv.status <> 'draft' then
    perform invoices_internal.raise('23514',
      format('invoice %s is %s: only a draft invoice can be finalized', inv.invoice_number, inv.status),
      null, 'finalize_invoice turns a draft into pending once');
  end if;
  perform invoices_internal.set_status(mid, inv_id, 'pending');
  perform invoices_internal.open_for_payment(mid, inv_id);
  return invoices_internal.idempotent_store(mid, invoices_internal.invoice_object(mid, inv_id));
end
$$;

comment on function invoices.finalize_invoice(text) is
  'draft -> pending: the invoice can now be paid. An invoice with an asset gets a locked quote (the median of the fresh rates for a fiat invoice, with markup_percent, rounded up to the asset unit) and a deadline of expiry_minutes (default 30); with no fresh rate it raises 55000 and stays a draft. ref: invoice number, UUID or slug. Returns the invoice object.';

create function invoices.cancel_invoice(ref text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('cancel_invoice');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  inv_id uuid;
  replay jsonb := invoices_internal.idempotent_replay(mid, 'cancel_invoice', jsonb_build_object('ref', ref));
begin
  if replay is not null then
    return replay;
  end if;
  inv_id := invoices_internal.resolve_invoice(mid, ref);
  perform invoices_internal.set_status(mid, inv_id, 'cancelled');
  return invoices_internal.idempotent_store(mid, invoices_internal.invoice_object(mid, inv_id));
end
$$;

comment on function invoices.cancel_invoice(text) is
  'draft/pending/overdue -> cancelled, releasing the deposit address. A paid, confirmed, expired or cancelled invoice cannot be cancelled (23514). Returns the invoice object.';

create function invoices.void_invoice(ref text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('void_invoice');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  inv_id uuid := invoices_internal.resolve_invoice(mid, ref);
  i invoices_internal.invoices;
begin
  select * into i from invoices_internal.invoices x where x.merchant_id = mid and x.id = inv_id for update;
  if i.amount_paid > 0 or i.asset_paid > 0 or exists (
       select 1 from invoices_internal.payments p
        where p.merchant_id = mid and p.invoice_id = inv_id and p.status <> 'reverted') then
    perform invoices_internal.raise('23514', format('invoice %s has received money: it cannot be voided', i.invoice_number),
      '{"errors":[{"field":"ref","message":"has payments: refund them, or mark the invoice uncollectible"}]}',
      'void_invoice is for an invoice issued by mistake; a draft is cancelled with cancel_invoice');
  end if;
  perform invoices_internal.set_status(mid, inv_id, 'void');
  return invoices_internal.invoice_object(mid, inv_id);
end
$$;

comment on function invoices.void_invoice(text) is
  'pending/overdue/expired -> void: a finalized invoice issued by mistake, with nothing received (else 23514). It is never edited or deleted: it stays, numbered, marked VOID, its deposit address released; the journal reverses it. Audited; event invoice.voided. Returns the invoice object.';

create function invoices.mark_uncollectible(ref text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('mark_uncollectible');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  inv_id uuid := invoices_internal.resolve_invoice(mid, ref);
  i invoices_internal.invoices;
begin
  select * into i from invoices_internal.invoices x where x.merchant_id = mid and x.id = inv_id for update;
  if invoices_internal.transition_problem(i.status, 'uncollectible') is not null then
    perform invoices_internal.raise_error(invoices_internal.transition_problem(i.status, 'uncollectible'));
  end if;
  update invoices_internal.invoices x
     set status = 'uncollectible', written_off = i.total - i.amount_paid, updated_at = now()
   where x.merchant_id = mid and x.id = inv_id;
  return invoices_internal.invoice_object(mid, inv_id);
end
$$;

comment on function invoices.mark_uncollectible(text) is
  'pending/partial/overdue/expired -> uncollectible: the amount still due is written off as bad debt (written_off; the journal books it). A payment in full afterwards still settles it (uncollectible -> paid, and the journal books the recovery); a part payment leaves it written off. Audited; event invoice.marked_uncollectible. Returns the invoice object.';

create function invoices.invoice_status(ref text) returns jsonb
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('invoice_status');  -- first: the caller's scope
  d record;
  result jsonb;
  markup numeric;
  estimate text;
begin
  -- found first, then read by its key: on Citus each statement runs on one shard
  select * into d from invoices_internal.document_invoice(ref);
  select jsonb_build_object(
           'id', r.id, 'invoice_number', r.invoice_number, 'status', r.status,
           'total', r.total::text, 'amount_paid', r.amount_paid::text,
           'amount_due', r.amount_due::text, 'currency', r.currency,
           'asset', r.asset, 'asset_amount', r.asset_amount::text, 'asset_paid', r.asset_paid::text,
           'address', r.address,
           'expires_at', r.expires_at, 'overpaid', r.overpaid, 'paid_late', r.paid_late,
           -- the latest payment's transaction (public on its chain anyway): the pay button's onPayment
           'latest_txid', (select p.txid from invoices_internal.payments p
                            where p.merchant_id = d.merchant_id and p.invoice_id = r.id and p.status <> 'reverted'
                            order by p.id desc limit 1),
           -- what is left to send, in the asset (exact: the page never computes money)
           'asset_due', case when r.asset_amount is not null
                             then greatest(r.asset_amount - r.asset_paid, 0)::text end,
           -- where its payments are: the least advanced one's state, its confirmations and the
           -- confirmations the invoice needs (the checkout's "in a block: 1 of 3")
           'payment', (select jsonb_build_object(
                                'state', case when bool_or(p.status = 'mempool') then 'mempool'
                                              when bool_or(p.status = 'in_block') then 'in_block'
                                              else 'confirmed' end,
                                'confirmations', min(case when p.block_height is null then 0
                                                          else greatest(c.tip_height - p.block_height + 1, 0) end),
                                'required', coalesce(r.confirmations, max(c.confirmations)))
                         from invoices_internal.payments p
                         join invoices_internal.chains c on c.id = p.chain
                        where p.merchant_id = d.merchant_id and p.invoice_id = r.id and p.status <> 'reverted'
                       having count(*) > 0))
    into result
    from invoices_internal.invoice_rows r
   where r.merchant_id = d.merchant_id and r.id = d.id;
  -- an expired quote no longer holds: what the invoice would cost at today's median rate (the
  -- pay button follows it until a new quote is locked)
  if result->>'status' = 'expired' and result->>'asset' is not null and result->>'currency' <> result->>'asset' then
    select i.markup_percent into markup from invoices_internal.invoices i
     where i.merchant_id = d.merchant_id and i.id = d.id;
    select invoices_internal.quote_asset_amount((result->>'total')::numeric, x.rate, coalesce(markup, 0), c.exponent)::text
      into estimate
      from invoices_internal.current_rate(result->>'asset', result->>'currency') x
      join invoices_internal.currencies c on c.code = result->>'asset'
     where x.rate is not null;
  end if;
  return result || jsonb_build_object('estimate', estimate);
end
$$;

comment on function invoices.invoice_status(text) is
  'Lightweight poll of one invoice: number, status, total, amount_paid, amount_due, currency, asset amount, deposit address and quote deadline. With an API key: the merchant''s invoice by number, id or slug; without one (the hosted page polls it): a finalized invoice by slug or id.';

create function invoices.requote_invoice(ref text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('requote_invoice');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  inv_id uuid := invoices_internal.resolve_invoice(mid, ref);
  inv invoices_internal.invoices;
begin
  select * into inv from invoices_internal.invoices where merchant_id = mid and id = inv_id for update;
  if inv.status <> 'expired' or inv.amount_paid > 0 then
    perform invoices_internal.raise('23514',
      format('invoice %s is %s%s: only an expired invoice without payments can be requoted',
             inv.invoice_number, inv.status, case when inv.amount_paid > 0 then ' and has payments' else '' end),
      null, 'requote_invoice gives an expired, unpaid invoice a fresh quote and deadline');
  end if;
  perform invoices_internal.set_status(mid, inv_id, 'pending');
  perform invoices_internal.open_for_payment(mid, inv_id);
  return invoices_internal.invoice_object(mid, inv_id);
end
$$;

comment on function invoices.requote_invoice(text) is
  'expired -> pending with a fresh quote (current median rate) and a new deadline, for an invoice without payments. ref: invoice number, UUID or slug. Returns the invoice object.';
