-- invoices 0.1.0 -> 0.2.0 (ALTER EXTENSION invoices UPDATE TO '0.2.0')
--
-- Every change to the SQL of the extension after 0.1.0 is written here as well, by hand, so an
-- installed 0.1.0 becomes exactly what CREATE EXTENSION installs at 0.2.0 (tests/upgrade.sh
-- compares the two through the catalog).

-- Payment detection: a poll that ran while addresses were handed out scans its blocks again
-- in the next poll (those addresses were not in its watched set).
alter table invoices_internal.chains
  add column last_scan_from bigint,
  add column last_watch_at timestamptz;
create index address_assignments_assigned_idx on invoices_internal.address_assignments (assigned_at);

create or replace function invoices_internal.chain_poll_input(chain text) returns jsonb
language plpgsql stable
as $$
begin
  return (
    select jsonb_build_object(
      'cursor', case when c.cursor_height is not null
                     then jsonb_build_object('height', c.cursor_height, 'hash', c.cursor_hash) end,
      'recent', coalesce((select jsonb_agg(jsonb_build_object('height', b.height, 'hash', b.hash) order by b.height)
                            from invoices_internal.chain_blocks b where b.chain = c.id), '[]'::jsonb),
      'start_height', c.start_height,
      'max_blocks', c.max_blocks_per_poll,
      'confirmations', c.confirmations,
      'watched', coalesce((select jsonb_agg(a) from invoices_internal.watched_addresses(c.id) a), '[]'::jsonb),
      'watch_at', now(),
      'rescan_from', case when c.last_watch_at is not null and exists (
                            select 1 from invoices_internal.address_assignments x
                             where x.assigned_at > c.last_watch_at - interval '10 seconds')
                          then c.last_scan_from end)
      from invoices_internal.chains c
     where c.id = chain_poll_input.chain);
end
$$;

create or replace function invoices_internal.record_chain_poll(chain text, result jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  c invoices_internal.chains;
  tip bigint := (result->'tip'->>'height')::bigint;
  fork bigint := (result->>'fork_height')::bigint;
  mempool_known boolean := jsonb_typeof(result->'mempool') = 'array';
  last_block jsonb := result->'blocks'->-1;
  t record;
  pay invoices_internal.payments;
  a record;
  inv invoices_internal.invoices;
  required integer;
  confs integer;
  new_status text;
  orphaned bigint[] := '{}';
  touched bigint[] := '{}';
  invoices_touched uuid[] := '{}';
  is_late boolean;
  confirmed_time timestamptz;
  k record;
  r record;
  fork_hash text;
  watch_at timestamptz;
  received integer := 0;
  confirmed integer := 0;
  reverted integer := 0;
begin
  select * into c from invoices_internal.chains where id = chain for update;
  if not found then
    return jsonb_build_object('skipped', 'chain removed');
  end if;
  -- 1. a reorg: blocks above the fork are gone; their payments wait to be seen again
  if fork is not null then
    delete from invoices_internal.chain_blocks b where b.chain = c.id and b.height > fork;
    for r in update invoices_internal.payments o
                set block_height = null, block_hash = null, status = 'mempool', updated_at = now()
              where o.chain = c.id and o.block_height > fork and o.status <> 'reverted'
              returning o.id
    loop
      orphaned := orphaned || r.id;
    end loop;
  end if;
  insert into invoices_internal.chain_blocks (chain, height, hash)
  select c.id, (b->>'height')::bigint, b->>'hash' from jsonb_array_elements(result->'blocks') b
  on conflict on constraint chain_blocks_pkey do update set hash = excluded.hash;
  delete from invoices_internal.chain_blocks b where b.chain = c.id and b.height < tip - 100;

  -- 2. transfers: in blocks first, then the mempool (a transaction in both is in its block)
  for t in
    select x.*, 0 as pass from jsonb_to_recordset(result->'transfers')
      as x(txid text, index bigint, address text, asset text, amount_base numeric, amount numeric, block jsonb)
    union all
    select x.*, 1 from jsonb_to_recordset(coalesce(result->'mempool', '[]'))
      as x(txid text, index bigint, address text, asset text, amount_base numeric, amount numeric, block jsonb)
    order by pass
  loop
    select * into pay from invoices_internal.payments q
     where q.chain = c.id and q.txid = t.txid and q.output_index = t.index
     limit 1;
    if found then
      if t.block is not null and (pay.block_hash is distinct from t.block->>'hash' or pay.status = 'reverted') then
        update invoices_internal.payments
           set block_height = (t.block->>'height')::bigint, block_hash = t.block->>'hash',
               status = case when status = 'reverted' then 'in_block' else status end,
               reverted_at = null, updated_at = now()
         where merchant_id = pay.merchant_id and id = pay.id;
        touched := touched || pay.id;
      elsif t.block is null and pay.status = 'reverted' then
        -- back in the mempool (e.g. re-broadcast after a reorg)
        update invoices_internal.payments set status = 'mempool', reverted_at = null, updated_at = now()
         where merchant_id = pay.merchant_id and id = pay.id;
        touched := touched || pay.id;
      end if;
      continue;
    end if;
    -- a new payment: to the address of which wallet (the asset tells ETH from USDC)?
    select ad.merchant_id, ad.id, coalesce(ad.invoice_id, ad.last_invoice_id) as invoice_id into a
      from invoices_internal.addresses ad
      join invoices_internal.wallets w on w.merchant_id = ad.merchant_id and w.id = ad.wallet_id
     where ad.address = t.address and w.asset = t.asset
     -- the live holder, else the one released last (a late payment)
     order by ad.invoice_id is null, ad.available_at desc, ad.id
     limit 1;
    if not found then
      continue;   -- watched a moment ago, since removed
    end if;
    -- locks in the order every other path takes them: the invoice, then its address
    select * into inv from invoices_internal.invoices where merchant_id = a.merchant_id and id = a.invoice_id
       for update;
    is_late := coalesce(inv.status in ('expired', 'cancelled') or inv.expires_at < now() and inv.status in ('pending', 'overdue'), false);
    insert into invoices_internal.payments (merchant_id, chain, txid, output_index, address, address_id, invoice_id,
                                            asset, amount_base, amount, block_height, block_hash, status, late)
    values (a.merchant_id, c.id, t.txid, t.index, t.address, a.id, a.invoice_id, t.asset, t.amount_base, t.amount,
            (t.block->>'height')::bigint, t.block->>'hash', case when t.block is null then 'mempool' else 'in_block' end,
            is_late)
    returning * into pay;
    update invoices_internal.addresses set first_paid_at = now()
     where merchant_id = a.merchant_id and id = a.id and first_paid_at is null;
    received := received + 1;
    if inv.id is not null then
      perform invoices_internal.emit_events(inv, '{payment.received}', invoices_internal.payment_object(pay, tip));
    end if;
    touched := touched || pay.id;
  end loop;

  -- 3. orphaned payments not seen again: back in the mempool if it still has them, else reverted
  for pay in
    select * from invoices_internal.payments q
     where q.id = any (orphaned) and q.block_height is null
       and not exists (select 1 from jsonb_array_elements(coalesce(result->'mempool', '[]')) m
                        where m->>'txid' = q.txid and (m->>'index')::bigint = q.output_index)
  loop
    update invoices_internal.payments set status = 'reverted', reverted_at = now(), confirmed_at = null, updated_at = now()
     where merchant_id = pay.merchant_id and id = pay.id
    returning * into pay;
    reverted := reverted + 1;
    select * into inv from invoices_internal.invoices where merchant_id = pay.merchant_id and id = pay.invoice_id;
    if inv.id is not null then
      perform invoices_internal.emit_events(inv, '{payment.reverted}', invoices_internal.payment_object(pay, tip));
      invoices_touched := invoices_touched || inv.id;
    end if;
  end loop;
  touched := touched || orphaned;

  -- 4. confirmations: every payment not yet confirmed, and those touched by this poll
  for pay in
    select * from invoices_internal.payments q
     where q.chain = c.id and (q.status in ('mempool', 'in_block') or q.id = any (touched))
       and q.status <> 'reverted'
  loop
    select coalesce(i.confirmations, c.confirmations) into required
      from invoices_internal.invoices i where i.merchant_id = pay.merchant_id and i.id = pay.invoice_id;
    required := coalesce(required, c.confirmations);
    confs := case when pay.block_height is null then 0 else greatest(tip - pay.block_height + 1, 0) end;
    new_status := case when confs >= required then 'confirmed'
                       when pay.block_height is not null then 'in_block' else 'mempool' end;
    if new_status <> pay.status then
      confirmed_time := case when new_status = 'confirmed' then now() end;
      update invoices_internal.payments
         set status = new_status, updated_at = now(), confirmed_at = confirmed_time
       where merchant_id = pay.merchant_id and id = pay.id
      returning * into pay;
      invoices_touched := invoices_touched || pay.invoice_id;
      if new_status = 'confirmed' then
        confirmed := confirmed + 1;
        select * into inv from invoices_internal.invoices where merchant_id = pay.merchant_id and id = pay.invoice_id;
        if inv.id is not null then
          perform invoices_internal.emit_events(inv, '{payment.confirmed}', invoices_internal.payment_object(pay, tip));
        end if;
      end if;
    elsif pay.id = any (touched) then
      invoices_touched := invoices_touched || pay.invoice_id;
    end if;
  end loop;

  -- 5. the invoices follow their payments (locked in one order: no deadlocks with the sweeps)
  for k in select i.merchant_id, i.id from invoices_internal.invoices i
            where i.id = any (invoices_touched)
            order by i.merchant_id, i.id
  loop
    perform invoices_internal.settle_invoice(k.merchant_id, k.id);
  end loop;

  -- the chain's row: every value computed first (no subquery or function inside its CASEs)
  if fork is not null then
    fork_hash := (select b.hash from invoices_internal.chain_blocks b where b.chain = c.id and b.height = fork);
  end if;
  watch_at := (result->>'watch_at')::timestamptz;

  update invoices_internal.chains
     set tip_height = tip, tip_hash = result->'tip'->>'hash', last_poll_at = now(), last_error = null,
         last_watch_at = coalesce(watch_at, last_watch_at),
         last_scan_from = case when fork is not null then fork + 1
                               when (last_block->>'height')::bigint > coalesce(cursor_height, -1)
                               then coalesce(cursor_height + 1, (result->'blocks'->0->>'height')::bigint)
                               else last_scan_from end,
         cursor_height = coalesce((last_block->>'height')::bigint, case when fork is not null then fork else cursor_height end),
         cursor_hash = coalesce(last_block->>'hash', case when fork is not null then fork_hash else cursor_hash end)
   where id = c.id;
  return jsonb_build_object('tip', tip, 'blocks', jsonb_array_length(result->'blocks'), 'received', received,
                            'confirmed', confirmed, 'reverted', reverted, 'reorg', fork is not null);
end
$$;

-- Documents: the invoice PDF, the hosted invoice page and invoice.viewed; invoice_status and the
-- PDF are readable without a key for a finalized invoice by slug (the hosted page polls it).
alter table invoices_internal.invoices add column viewed_at timestamptz;
create or replace function invoices_internal.retry_count() returns integer
language sql stable
as $$
  select cardinality(string_to_array(current_setting('invoices.webhook_retry_schedule'), ','))
$$;
revoke execute on function invoices_internal.retry_count() from public;
CREATE  FUNCTION invoices_internal."prepare_new_invoice"(
	"payload" jsonb /* JsonB */
) RETURNS jsonb /* JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'prepare_new_invoice_wrapper';
revoke execute on function invoices_internal.prepare_new_invoice(jsonb) from public;
CREATE  FUNCTION invoices_internal."render_invoice_pdf"(
	"doc" jsonb /* JsonB */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'render_invoice_pdf_wrapper';
CREATE  FUNCTION invoices_internal."render_hosted_page"(
	"doc" jsonb, /* JsonB */
	"api_base" TEXT, /* & str */
	"pdf_url" TEXT, /* Option < & str > */
	"poll_ms" INT, /* i32 */
	"now_ms" bigint /* i64 */
) RETURNS TEXT /* String */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'render_hosted_page_wrapper';
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
      from invoices_internal.invoices i where i.slug = r and i.finalized_at is not null;
  end if;
  if document_invoice.id is null then
    perform invoices_internal.raise('P0002', format('invoice "%s" not found', r), null,
      'without an API key an invoice is found by its slug (from its hosted URL) once it is finalized');
  end if;
end
$$;

create or replace function invoices.invoice_status(ref text) returns jsonb
language sql stable security definer
set search_path = pg_catalog
as $$
  select jsonb_build_object(
           'id', r.id, 'invoice_number', r.invoice_number, 'status', r.status,
           'total', r.total::text, 'amount_paid', r.amount_paid::text,
           'amount_due', r.amount_due::text, 'currency', r.currency,
           'asset', r.asset, 'asset_amount', r.asset_amount::text, 'asset_paid', r.asset_paid::text,
           'address', r.address,
           'expires_at', r.expires_at, 'overpaid', r.overpaid, 'paid_late', r.paid_late)
    from invoices_internal.document_invoice(ref) d
    join invoices_internal.invoice_rows r on r.merchant_id = d.merchant_id and r.id = d.id
$$;
comment on function invoices.invoice_status(text) is
  'Lightweight poll of one invoice: number, status, total, amount_paid, amount_due, currency, asset amount, deposit address and quote deadline. With an API key: the merchant''s invoice by number, id or slug; without one (the hosted page polls it): a finalized invoice by slug or id.';

create or replace function invoices_internal.http_pre_request() returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  headers json := coalesce(nullif(current_setting('request.headers', true), ''), '{}')::json;
  need text := invoices_internal.required_scope(coalesce(current_setting('request.method', true), 'GET'),
                                                coalesce(current_setting('request.path', true), '/'));
  presented text := nullif(btrim(headers->>'x-api-key'), '');
  owner record;
  k record;
  rl bigint[];   -- {allowed 0/1, limit, remaining, reset_at, retry_after}
  limits text;
begin
  if presented is null and headers->>'authorization' ~* '^bearer\s' then
    presented := nullif(btrim(substr(headers->>'authorization', 8)), '');
  end if;
  if presented is null then
    if need in ('anonymous', 'public_read') then
      return;
    end if;
    perform invoices_internal.raise('28000', 'an API key is required', null,
      'send it as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;

  select h.merchant_id, h.key_id into owner
    from invoices_internal.api_key_hashes h
   where h.key_hash = encode(sha256(convert_to(presented, 'UTF8')), 'hex');
  select id, merchant_id, scopes, rate_limit_per_minute, revoked_at into k
    from invoices_internal.api_keys
   where merchant_id = owner.merchant_id and id = owner.key_id;
  if not found or k.revoked_at is not null then
    perform invoices_internal.raise('28000',
      case when found then 'this API key was revoked' else 'invalid API key' end, null,
      'send an active key as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;

  -- Counted in shared memory: the 429 below rolls this transaction back, the count stays.
  rl := invoices_internal.rate_limit_hit(
    k.id, coalesce(k.rate_limit_per_minute, current_setting('invoices.rate_limit_per_minute')::int));
  limits := format('"X-RateLimit-Limit": "%s", "X-RateLimit-Remaining": "%s", "X-RateLimit-Reset": "%s"',
                   rl[2], rl[3], rl[4]);
  if rl[1] = 0 then
    perform set_config('invoices.response_headers',
                       format('{%s, "Retry-After": "%s"}', limits, rl[5]), true);
    perform invoices_internal.raise('54000',
      format('rate limit exceeded: %s requests per minute for this API key', rl[2]), null,
      format('retry after %s seconds (Retry-After)', rl[5]));
  end if;
  perform set_config('invoices.response_headers', '{' || limits || '}', true),
          set_config('response.headers', '[{' || replace(limits, ', ', '}, {') || '}]', true);

  if need = 'method_not_allowed' then
    perform invoices_internal.raise('0A000',
      format('%s %s is not allowed: the views are read-only', current_setting('request.method', true),
             current_setting('request.path', true)), null,
      'change data through the functions under /rpc/ (create_invoice, cancel_invoice, ...)');
  end if;
  need := replace(need, 'public_', '');  -- with a key, a public function needs its scope
  if need <> 'anonymous' and not (need = any (k.scopes) or 'admin' = any (k.scopes)) then
    perform invoices_internal.raise('42501',
      format('this API key lacks the %s scope', need), null,
      format('create a key with scopes => ''{%s}'' (this one has %s)', need, array_to_string(k.scopes, ', ')));
  end if;

  perform set_config('invoices.merchant_id', k.merchant_id::text, true),
          set_config('invoices.api_key_id', k.id::text, true),
          set_config('invoices.idempotency_key', coalesce(headers->>'idempotency-key', ''), true);
end
$$;

create domain invoices."application/pdf" as bytea;
comment on domain invoices."application/pdf" is
  'A PDF document: PostgREST serves functions returning it for Accept: application/pdf.';
create domain invoices."text/html" as text;
comment on domain invoices."text/html" is
  'An HTML page: PostgREST serves functions returning it for Accept: text/html (browsers).';

-- The document both renderers read.
create function invoices_internal.invoice_document(mid uuid, invoice_id uuid) returns jsonb
language plpgsql stable
as $$
begin
  return (
    select invoices_internal.invoice_object(mid, invoice_document.invoice_id) || jsonb_build_object(
             'payment_chain', (
               select jsonb_build_object('family', c.family, 'chain_id', c.chain_id,
                                         'token_contract', c.tokens -> i.asset ->> 'contract',
                                         'token_decimals', (c.tokens -> i.asset ->> 'decimals')::int)
                 from invoices_internal.chains c
                where i.asset = any (c.assets)
                order by c.active desc, c.created_at
                limit 1))
      from invoices_internal.invoices i
     where i.merchant_id = mid and i.id = invoice_document.invoice_id);
end
$$;

create function invoices.invoice_pdf(ref text) returns invoices."application/pdf"
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  d record;
  doc jsonb;
begin
  select * into d from invoices_internal.document_invoice(ref);
  doc := invoices_internal.invoice_document(d.merchant_id, d.id);
  perform set_config('response.headers', json_build_array(
            json_build_object('Content-Disposition', format('inline; filename="%s.pdf"', doc ->> 'invoice_number')),
            json_build_object('Cache-Control', 'no-store'))::text, true);
  return invoices_internal.render_invoice_pdf(doc);
end
$$;
comment on function invoices.invoice_pdf(text) is
  'The invoice as a PDF: merchant and customer, number and dates, the line table, subtotal / discount / tax / total, the crypto amount with rate and deadline, the deposit address with a QR code of its payment URI (BIP21 bitcoin:, EIP-681 ethereum: incl. ERC-20 transfer, kaspa:), and a PAID / EXPIRED / CANCELLED stamp. ref: the invoice number, id or slug for the merchant''s key; without a key, the slug (or id) of a finalized invoice. Over HTTP: GET /rpc/invoice_pdf?ref=<slug> with Accept: application/pdf (the pdf_url of the invoice).';

create function invoices.hosted_invoice(slug text) returns invoices."text/html"
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  i invoices_internal.invoices;
begin
  select * into i from invoices_internal.invoices v
   where v.slug = btrim(coalesce(hosted_invoice.slug, '')) and v.finalized_at is not null;
  if not found then
    perform invoices_internal.raise('P0002', format('invoice "%s" not found', hosted_invoice.slug), null,
      'the hosted page shows a finalized invoice by the slug in its URL');
  end if;
  perform set_config('response.headers', '[{"Cache-Control": "no-store"}, {"X-Frame-Options": "DENY"}, {"Referrer-Policy": "no-referrer"}]', true);
  return invoices_internal.render_hosted_page(
    invoices_internal.invoice_document(i.merchant_id, i.id),
    '../rpc/',
    '../rpc/invoice_pdf?ref=' || i.slug,
    (extract(epoch from current_setting('invoices.page_poll_ms')::interval) * 1000)::int,
    (extract(epoch from clock_timestamp()) * 1000)::bigint);
end
$$;
comment on function invoices.hosted_invoice(text) is
  'The hosted invoice page (HTML, self-contained: no external scripts, fonts or images): amount and asset, deposit address with its QR code and an "open in wallet" link, a countdown to the quote deadline, the status refreshing by polling invoice_status, paid / expired states that follow the invoice''s success_url / failed_url, and the PDF. Served at <invoices.public_base_url>/i/<slug> (the web server maps that to GET /rpc/hosted_invoice?slug=<slug>); opening it records invoice.viewed once.';

-- invoice.viewed: the page reports that it was opened (a GET over PostgREST runs read-only, so
-- the page's script POSTs here). The first view stamps viewed_at and emits the event; later
-- views change nothing.
create function invoices.invoice_viewed(slug text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  i invoices_internal.invoices;
  changed invoices_internal.invoices;
begin
  -- found by slug (any merchant), then changed by its key
  select * into i from invoices_internal.invoices v
   where v.slug = btrim(coalesce(invoice_viewed.slug, '')) and v.finalized_at is not null;
  if not found then
    perform invoices_internal.raise('P0002', format('invoice "%s" not found', invoice_viewed.slug), null,
      'pass the slug of a finalized invoice (from its hosted URL)');
  end if;
  if i.viewed_at is null then
    update invoices_internal.invoices v set viewed_at = now()
     where v.merchant_id = i.merchant_id and v.id = i.id and v.viewed_at is null
    returning * into changed;
    if found then
      perform invoices_internal.emit_events(changed, '{invoice.viewed}');
      return jsonb_build_object('slug', changed.slug, 'viewed_at', changed.viewed_at, 'first_view', true);
    end if;
    -- viewed by a concurrent call meanwhile
    select * into i from invoices_internal.invoices v where v.merchant_id = i.merchant_id and v.id = i.id;
  end if;
  return jsonb_build_object('slug', i.slug, 'viewed_at', i.viewed_at, 'first_view', false);
end
$$;
comment on function invoices.invoice_viewed(text) is
  'Records that the payer opened the hosted page (the page calls it: POST /rpc/invoice_viewed {"slug": …}). The first call stamps viewed_at and emits invoice.viewed; later calls change nothing. Returns {slug, viewed_at, first_view}.';

revoke execute on function invoices.invoice_pdf(text), invoices.hosted_invoice(text),
  invoices.invoice_viewed(text) from public;
grant execute on function invoices.invoice_pdf(text), invoices.hosted_invoice(text),
  invoices.invoice_viewed(text) to invoices_admin;
-- Documents: the PDF and the hosted page (public by slug, see the pre-request check).
grant execute on function invoices.invoice_pdf(text), invoices.hosted_invoice(text),
  invoices.invoice_viewed(text) to invoices_api;
revoke execute on function invoices_internal.render_invoice_pdf(jsonb),
  invoices_internal.render_hosted_page(jsonb, text, text, integer, bigint),
  invoices_internal.document_invoice(text), invoices_internal.invoice_document(uuid, uuid) from public;

-- E-mail: send_invoice and create_invoice(send => true) queue the invoice's e-mail; the worker
-- delivers it through invoices.smtp_url.
create or replace function invoices.create_invoice(
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

  -- One statement writes the invoice, its lines and, when it is sent, the e-mail to the
  -- customer (the worker sends it). The prepared object's keys are the column names: one
  -- jsonb_populate_record reads them instead of a cast per column; the columns decided here
  -- are given as they are (merging them into the object first would sort ~60 keys again).
  with inv as (
    insert into invoices_internal.invoices (merchant_id, id, number_seq, invoice_number, slug, status,
      currency, exponent, subtotal, discount_amount, tax_rate, tax_amount, total, amount_paid, asset_paid,
      customer_email, customer_name, customer_company, customer_address, merchant_snapshot,
      issue_date, due_date, notes, metadata, order_id, asset, markup_percent, confirmations,
      expiry_minutes, pause_minutes, callback_url, callback_secret, attempts_callback, success_url,
      failed_url, expires_at, overpaid, paid_late, created_at, updated_at)
    select mid, new_id, m.seq, new_number, new_slug, new_status,
           r.currency, r.exponent, r.subtotal, r.discount_amount, r.tax_rate, r.tax_amount, r.total, 0, 0,
           r.customer_email, r.customer_name, r.customer_company, r.customer_address,
           jsonb_build_object('name', m.name, 'email', m.email, 'address', m.address),
           r.issue_date, r.due_date, r.notes, r.metadata, r.order_id, r.asset, r.markup_percent, r.confirmations,
           r.expiry_minutes, r.pause_minutes, r.callback_url, r.callback_secret, r.attempts_callback, r.success_url,
           r.failed_url, r.expires_at, false, false, now(), now()
      from jsonb_populate_record(null::invoices_internal.invoices, p) r
    returning merchant_id, id),
  new_lines as (
    insert into invoices_internal.invoice_lines (merchant_id, invoice_id, position, description, quantity, unit_price, amount)
    select inv.merchant_id, inv.id, l.n, l.description, l.quantity, l.unit_price, l.amount
      from inv, rows from (jsonb_to_recordset(p->'lines')
                             as (description text, quantity numeric, unit_price numeric, amount numeric))
                with ordinality l(description, quantity, unit_price, amount, n))
  insert into invoices_internal.emails (merchant_id, invoice_id, recipient, max_attempts)
  select inv.merchant_id, inv.id, p->>'customer_email', invoices_internal.retry_count() + 1
    from inv
   where send and p->>'customer_email' is not null;

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

CREATE  FUNCTION invoices_internal."is_email"(
	"address" TEXT /* & str */
) RETURNS bool /* bool */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'is_email_wrapper';

create table invoices_internal.emails (
  merchant_id      uuid not null,
  id               bigint generated always as identity,
  invoice_id       uuid not null,
  recipient        text not null check (invoices_internal.is_email(recipient)),
  status           text not null default 'queued' check (status in ('queued', 'sending', 'sent', 'failed', 'dead')),
  attempts         integer not null default 0,
  max_attempts     integer not null,
  next_attempt_at  timestamptz not null default now(),
  lease_until      timestamptz,
  last_error       text,
  relay_response   text,
  created_at       timestamptz not null default now(),
  sent_at          timestamptz,
  primary key (merchant_id, id),
  foreign key (merchant_id, invoice_id) references invoices_internal.invoices (merchant_id, id)
);
create index emails_due_idx on invoices_internal.emails (next_attempt_at) where status in ('queued', 'failed', 'sending');
create index emails_invoice_idx on invoices_internal.emails (merchant_id, invoice_id);

-- Queues the e-mail of one invoice to `recipient` (default: its customer).
create function invoices_internal.queue_invoice_email(mid uuid, invoice_id uuid, recipient text default null)
returns invoices_internal.emails
language plpgsql volatile
as $$
declare
  i invoices_internal.invoices;
  e invoices_internal.emails;
  to_addr text;
begin
  select * into i from invoices_internal.invoices v where v.merchant_id = mid and v.id = invoice_id;
  to_addr := btrim(coalesce(nullif(btrim(recipient), ''), i.customer_email, ''));
  if to_addr = '' then
    perform invoices_internal.raise('22023', format('invoice %s has no customer e-mail to send it to', i.invoice_number),
      '{"errors":[{"field":"customer_email","message":"is required to send the invoice (or pass to_email)"}]}',
      'create the invoice with customer_email, or call send_invoice(ref, to_email => ''…'')');
  end if;
  if not invoices_internal.is_email(to_addr) then
    perform invoices_internal.raise('22023', format('invalid e-mail address %s', to_addr),
      '{"errors":[{"field":"to_email","message":"is not an e-mail address"}]}', 'pass an address such as bob@example.com');
  end if;
  insert into invoices_internal.emails (merchant_id, invoice_id, recipient, max_attempts)
  values (mid, i.id, to_addr, invoices_internal.retry_count() + 1)
  returning * into e;
  return e;
end
$$;

create function invoices_internal.email_object(e invoices_internal.emails) returns jsonb
language sql stable
as $$
  select jsonb_build_object('id', e.id, 'invoice_id', e.invoice_id,
           'invoice_number', (select invoice_number from invoices_internal.invoices i
                               where i.merchant_id = e.merchant_id and i.id = e.invoice_id),
           'to', e.recipient, 'status', e.status, 'attempts', e.attempts,
           'next_attempt_at', e.next_attempt_at, 'last_error', e.last_error,
           'created_at', e.created_at, 'sent_at', e.sent_at)
$$;

create function invoices.send_invoice(ref text, to_email text default null) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
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
 where e.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]);
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

revoke all on invoices_internal.emails from public;
alter table invoices_internal.emails enable row level security;
create policy merchant_scope on invoices_internal.emails
  using (merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]));
revoke execute on function invoices.send_invoice(text, text) from public;
grant execute on function invoices.send_invoice(text, text) to invoices_admin;
grant select on invoices.emails to invoices_admin;
revoke execute on function invoices_internal.queue_invoice_email(uuid, uuid, text),
  invoices_internal.email_object(invoices_internal.emails), invoices_internal.claim_emails(integer, integer),
  invoices_internal.database_setting(text), invoices_internal.is_email(text),
  invoices_internal.record_email(uuid, bigint, text, boolean, text) from public;
-- E-mail: merchants send (write scope) and follow their e-mails (read).
grant select on invoices.emails to invoices_api;
grant execute on function invoices.send_invoice(text, text) to invoices_api;
select pg_catalog.pg_extension_config_dump('invoices_internal.emails', '');

create or replace function invoices_internal.emit_events(i invoices_internal.invoices, events text[], payment jsonb default null,
                                              audit_from text[] default null, audit_to text[] default null)
returns void
language plpgsql volatile
as $$
declare
  data jsonb := jsonb_build_object(
    'id', i.id, 'invoice_number', i.invoice_number, 'status', i.status, 'currency', i.currency,
    'total', i.total::text, 'amount_paid', i.amount_paid::text, 'asset', i.asset,
    'asset_paid', i.asset_paid::text, 'address', i.deposit_address, 'overpaid', i.overpaid,
    'paid_late', i.paid_late, 'order_id', i.order_id, 'metadata', i.metadata);
  retries integer := invoices_internal.retry_count();
  actor text := case when audit_to is not null then invoices_internal.current_actor() end;
begin
  if payment is not null then
    data := data || jsonb_build_object('payment', payment);
  end if;
  with audit as (
    insert into invoices_internal.audit_log (merchant_id, invoice_id, from_status, to_status, event, actor)
    select i.merchant_id, i.id, t.from_status, t.to_status, t.event, actor
      from unnest(audit_from, audit_to, events) t(from_status, to_status, event)
     where audit_to is not null),
  ev as (
    insert into invoices_internal.events (merchant_id, id, event, invoice_id, data)
    select i.merchant_id, invoices_internal.uuid_v7(), e.event, i.id, data
      from unnest(events) with ordinality e(event, n)
     order by e.n
    returning id, event)
  insert into invoices_internal.webhook_deliveries (merchant_id, event_id, endpoint_id, url, secret, max_retries)
  select i.merchant_id, d.event_id, d.endpoint_id, d.url, d.secret, d.max_retries
    from (select ev.id as event_id, ev.event, w.id as endpoint_id, w.url, null::text as secret,
                 retries as max_retries, 1 as kind
            from ev join invoices_internal.webhook_endpoints w
              on w.merchant_id = i.merchant_id and w.active and ('*' = any (w.events) or ev.event = any (w.events))
          union all
          select ev.id, ev.event, null, i.callback_url, i.callback_secret, coalesce(i.attempts_callback, retries), 2
            from ev
           where i.callback_url is not null) d
   order by array_position(events, d.event), d.kind, d.endpoint_id;
end
$$;

-- A new invoice's audit rows and events are written by its BEFORE INSERT trigger now.
drop trigger invoice_created on invoices_internal.invoices;
drop function invoices_internal.invoice_after_insert();

create or replace function invoices_internal.invoice_before_update() returns trigger
language plpgsql
as $$
declare
  t text[];
begin
  if new.id <> old.id or new.merchant_id <> old.merchant_id or new.invoice_number <> old.invoice_number
     or new.number_seq <> old.number_seq or new.slug <> old.slug or new.created_at <> old.created_at then
    raise exception 'invoice % cannot change its identity (id, merchant, number, slug)', old.invoice_number
      using errcode = '23514';
  end if;
  if old.status <> 'draft' and (new.currency, new.subtotal, new.discount_amount, new.tax_rate,
                                new.tax_amount, new.total)
      is distinct from (old.currency, old.subtotal, old.discount_amount, old.tax_rate,
                        old.tax_amount, old.total) then
    raise exception 'invoice % is %: its amounts are locked', old.invoice_number, old.status
      using errcode = '23514', hint = 'only draft invoices can change their amounts';
  end if;
  new.updated_at := now();
  if new.status is distinct from old.status then
    t := invoices_internal.check_transition(old.status, new.status);
    case t[1]
      when 'finalized_at' then new.finalized_at := now();
      when 'partially_paid_at' then new.partially_paid_at := now();
      when 'paid_at' then new.paid_at := now();
      when 'confirmed_at' then new.confirmed_at := now();
      when 'expired_at' then new.expired_at := now();
      when 'overdue_at' then new.overdue_at := now();
      when 'cancelled_at' then new.cancelled_at := now();
      else null;
    end case;
    -- the audit row and the outbox, in the same transaction (one statement)
    perform invoices_internal.emit_events(new, array[t[2]], null, array[old.status], array[new.status]);
    -- expiry, cancellation and confirmation release the deposit address after its pause
    -- (the invoice keeps showing deposit_address; address_id goes, so an invoice revived by
    -- a late payment or a reorg never claims an address the carousel has handed on)
    if new.status in ('expired', 'cancelled', 'confirmed') and old.address_id is not null then
      perform invoices_internal.release_address(new.merchant_id, new.id, old.address_id,
                                                coalesce(new.pause_minutes, 0));
      new.address_id := null;
    end if;
  end if;
  perform invoices_internal.check_invoice_row(new);
  return new;
end
$$;
revoke execute on function invoices_internal.emit_events(invoices_internal.invoices, text[], jsonb, text[], text[]) from public;
drop function invoices_internal.emit_event(invoices_internal.invoices, text, jsonb);

-- Distributable on Citus: every unique index of a tenant table leads with merchant_id; the
-- lookups by an API key's hash and by a payment link's slug go through routing tables keyed by
-- them (invoices_internal.distribution_plan says how each table is laid out).
drop index invoices_internal.invoices_slug_key;
create unique index invoices_slug_key on invoices_internal.invoices (slug, merchant_id);
drop index invoices_internal.addresses_id_key;
create unique index addresses_id_key on invoices_internal.addresses (merchant_id, id);
drop index invoices_internal.addresses_one_invoice;
create unique index addresses_one_invoice on invoices_internal.addresses (merchant_id, invoice_id)
  where invoice_id is not null;
drop index invoices_internal.invoices_one_live_invoice_per_address;
create unique index invoices_one_live_invoice_per_address on invoices_internal.invoices (merchant_id, address_id)
  where status in ('pending', 'partial', 'paid', 'overdue') and address_id is not null;
drop index invoices_internal.webhook_deliveries_id_key;
drop index invoices_internal.payments_id_key;
create index payments_id_idx on invoices_internal.payments (id);
drop index invoices_internal.api_keys_key_hash_key;
drop index invoices_internal.api_keys_id_key;
create table invoices_internal.api_key_hashes (
  key_hash    text primary key,
  merchant_id uuid not null,
  key_id      uuid not null
);
insert into invoices_internal.api_key_hashes (key_hash, merchant_id, key_id)
select key_hash, merchant_id, id from invoices_internal.api_keys;
drop index invoices_internal.payment_links_slug_key;
create unique index payment_links_slug_key on invoices_internal.payment_links (merchant_id, slug);
create index payment_links_slug_idx on invoices_internal.payment_links (slug);
create table invoices_internal.payment_link_slugs (
  slug        text primary key,
  merchant_id uuid not null,
  link_id     uuid not null
);
insert into invoices_internal.payment_link_slugs (slug, merchant_id, link_id)
select slug, merchant_id, id from invoices_internal.payment_links;
revoke all on invoices_internal.api_key_hashes, invoices_internal.payment_link_slugs from public;
alter table invoices_internal.api_key_hashes enable row level security;
create policy merchant_scope on invoices_internal.api_key_hashes
  using (merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]));
alter table invoices_internal.payment_link_slugs enable row level security;
create policy merchant_scope on invoices_internal.payment_link_slugs
  using (merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]));
select pg_catalog.pg_extension_config_dump('invoices_internal.api_key_hashes', '');
select pg_catalog.pg_extension_config_dump('invoices_internal.payment_link_slugs', '');

-- One merchant per wallet key: the routing table of account keys and bring-your-own addresses.
-- Keys that several merchants already share stay with each of them; the table routes a key to
-- its active (else oldest) wallet, and later create_wallet calls by another merchant are refused.
create table invoices_internal.wallet_keys (
  first_address text not null,            -- receive address 0 of the key, or the byo address
  asset         text not null,
  merchant_id   uuid not null,
  wallet_id     uuid not null,
  created_at    timestamptz not null default now(),
  primary key (first_address, asset)
);
insert into invoices_internal.wallet_keys (first_address, asset, merchant_id, wallet_id, created_at)
select distinct on (k.first_address, w.asset) k.first_address, w.asset, w.merchant_id, w.id, w.created_at
  from invoices_internal.wallets w
  cross join lateral (
    select case when w.xpub is null
                then (select a.address from invoices_internal.addresses a
                       where a.merchant_id = w.merchant_id and a.wallet_id = w.id limit 1)
                else invoices_internal.derive_wallet_address(w.asset, w.network, w.xpub, 0) ->> 'address'
           end as first_address) k
 where k.first_address is not null
 order by k.first_address, w.asset, w.active desc, w.created_at;
revoke all on invoices_internal.wallet_keys from public;
alter table invoices_internal.wallet_keys enable row level security;
create policy merchant_scope on invoices_internal.wallet_keys
  using (merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]));
select pg_catalog.pg_extension_config_dump('invoices_internal.wallet_keys', '');

create or replace function invoices_internal.insert_api_key(mid uuid, name text, scopes text[],
                                                 rate_limit_per_minute integer default null)
returns jsonb
language plpgsql volatile
as $$
declare
  prepared jsonb := invoices_internal.prepare_api_key(name, scopes);
  canonical text[];
  issued record;
  k invoices_internal.api_keys;
begin
  if prepared ? 'error' then
    perform invoices_internal.raise_error(prepared);
  end if;
  canonical := array(select jsonb_array_elements_text(prepared->'scopes'));
  if rate_limit_per_minute is not null and rate_limit_per_minute < 1 then
    perform invoices_internal.raise('22023', 'invalid API key: rate_limit_per_minute must be at least 1',
      '{"errors":[{"field":"rate_limit_per_minute","message":"must be at least 1"}]}',
      'leave it null to use the invoices.rate_limit_per_minute setting');
  end if;
  select * into issued from invoices_internal.issue_api_key(invoices_internal.jwt_secret(), 'invoices_api');
  insert into invoices_internal.api_keys (merchant_id, name, prefix, key_hash, scopes, rate_limit_per_minute)
  values (mid, btrim(name), issued.prefix, issued.key_hash, canonical, rate_limit_per_minute)
  returning * into k;
  insert into invoices_internal.api_key_hashes (key_hash, merchant_id, key_id)
  values (k.key_hash, k.merchant_id, k.id);
  return jsonb_build_object(
    'id', k.id, 'merchant_id', k.merchant_id, 'name', k.name, 'prefix', k.prefix,
    'scopes', to_jsonb(k.scopes), 'rate_limit_per_minute', k.rate_limit_per_minute,
    'created_at', k.created_at, 'api_key', issued.key);
end
$$;

create or replace function invoices_internal.release_address(mid uuid, inv_id uuid, addr_id bigint, pause_minutes integer)
returns void
language plpgsql volatile
as $$
declare
  available timestamptz := now() + make_interval(mins => pause_minutes);
begin
  update invoices_internal.addresses
     set invoice_id = null, available_at = available
   where merchant_id = mid and id = addr_id and invoice_id = inv_id;
  update invoices_internal.address_assignments set released_at = now()
   where merchant_id = mid and address_id = addr_id and invoice_id = inv_id and released_at is null;
end
$$;

create or replace function invoices_internal.assign_address(mid uuid, inv_id uuid) returns void
language plpgsql volatile
as $$
declare
  inv invoices_internal.invoices;
  w invoices_internal.wallets;
  a invoices_internal.addresses;
  derived jsonb;
  unused integer;
begin
  select * into inv from invoices_internal.invoices where merchant_id = mid and id = inv_id;
  if inv.asset is null then
    return;
  end if;
  select * into w from invoices_internal.wallets
   where merchant_id = mid and asset = inv.asset and active;
  if not found then
    return;
  end if;
  -- 1. the oldest free address whose pause is over (concurrent finalizers skip each other's)
  select * into a from invoices_internal.addresses
   where merchant_id = mid and wallet_id = w.id and invoice_id is null and available_at <= now()
   order by available_at, id
   limit 1
   for update skip locked;
  if not found then
    -- 2. derive the next index; the wallet row serializes derivation
    select * into w from invoices_internal.wallets where merchant_id = mid and id = w.id for update;
    if w.xpub is null then
      perform invoices_internal.raise('55000',
        format('the %s address of this merchant is in use by another live invoice', inv.asset), null,
        'a bring-your-own wallet has one address: wait until its invoice is paid, expires or is cancelled, or create_wallet with an xpub');
    end if;
    select count(*) into unused from invoices_internal.addresses
     where merchant_id = mid and wallet_id = w.id and derivation_index is not null and first_paid_at is null
       and derivation_index > coalesce((select max(derivation_index) from invoices_internal.addresses
                                         where merchant_id = mid and wallet_id = w.id and first_paid_at is not null), -1);
    if unused >= w.gap_limit then
      perform invoices_internal.raise('55000',
        format('gap limit reached: %s derived %s addresses have no payment yet', unused, inv.asset),
        jsonb_build_object('errors', jsonb_build_array(jsonb_build_object('field', 'gap_limit',
          'message', format('%s unused addresses in a row; a wallet scanning %s would miss the next', unused, w.gap_limit))))::text,
        'wait for payments or expiries to free addresses, or raise the wallet''s gap_limit');
    end if;
    loop
      derived := invoices_internal.derive_wallet_address(w.asset, w.network, w.xpub, w.next_index);
      if derived ? 'error' then
        perform invoices_internal.raise_error(derived);
      end if;
      -- an index whose address another wallet holds (as its bring-your-own address) is skipped
      exit when not exists (select 1 from invoices_internal.wallet_keys k
                             where k.first_address = derived ->> 'address' and k.asset = w.asset
                               and k.wallet_id <> w.id);
      w.next_index := w.next_index + 1;
    end loop;
    insert into invoices_internal.addresses (merchant_id, wallet_id, address, derivation_index)
    values (mid, w.id, derived->>'address', w.next_index)
    returning * into a;
    update invoices_internal.wallets set next_index = w.next_index + 1 where merchant_id = mid and id = w.id;
  end if;
  update invoices_internal.addresses
     set invoice_id = inv_id, last_invoice_id = inv_id, times_assigned = times_assigned + 1
   where merchant_id = mid and wallet_id = a.wallet_id and id = a.id;
  insert into invoices_internal.address_assignments (merchant_id, address_id, invoice_id)
  values (mid, a.id, inv_id);
  update invoices_internal.invoices set address_id = a.id, deposit_address = a.address
   where merchant_id = mid and id = inv_id;
end
$$;

create or replace function invoices_internal.link_slug(title text) returns text
language plpgsql volatile
as $$
declare
  base text := left(trim(both '-' from regexp_replace(lower(coalesce(title, '')), '[^a-z0-9]+', '-', 'g')), 60);
  candidate text;
  n integer := 1;
begin
  if base = '' then
    base := 'link';
  end if;
  candidate := base;
  while exists (select 1 from invoices_internal.payment_link_slugs l where l.slug = candidate) loop
    n := n + 1;
    candidate := base || '-' || n;
  end loop;
  return candidate;
end
$$;

create or replace function invoices.create_payment_link(
  title        text,
  slug         text default null,
  description  text default null,
  amount       numeric default null,
  currency     text default null,
  asset        text default null,
  redirect_url text default null,
  metadata     jsonb default '{}'::jsonb
) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  mid uuid := invoices_internal.require_merchant();
  cur text := upper(coalesce(currency, (select m.default_currency from invoices_internal.merchants m where m.id = mid)));
  errors jsonb := '[]';
  l invoices_internal.payment_links;
begin
  if title is null or length(btrim(title)) = 0 or length(title) > 200 then
    errors := errors || '[{"field": "title", "message": "required, at most 200 characters"}]';
  end if;
  if slug is not null and slug !~ '^[a-z0-9][a-z0-9-]{0,79}$' then
    errors := errors || '[{"field": "slug", "message": "lowercase letters, digits and -, at most 80"}]';
  elsif slug is not null and exists (select 1 from invoices_internal.payment_link_slugs p where p.slug = create_payment_link.slug) then
    errors := errors || '[{"field": "slug", "message": "already taken"}]';
  end if;
  if amount is not null and amount <= 0 then
    errors := errors || '[{"field": "amount", "message": "must be positive (or null: the payer chooses)"}]';
  end if;
  if not exists (select 1 from invoices_internal.currencies c where c.code = cur) then
    errors := errors || '[{"field": "currency", "message": "unknown currency"}]';
  end if;
  if asset is not null and asset not in ('BTC', 'ETH', 'USDC', 'KAS') then
    errors := errors || '[{"field": "asset", "message": "must be BTC, ETH, USDC or KAS"}]';
  end if;
  if redirect_url is not null and redirect_url !~ '^https?://' then
    errors := errors || '[{"field": "redirect_url", "message": "must be an http(s) URL"}]';
  end if;
  if metadata is not null and jsonb_typeof(metadata) <> 'object' then
    errors := errors || '[{"field": "metadata", "message": "must be a JSON object"}]';
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023',
      format('invalid payment link: %s', (select string_agg(x->>'field', ', ') from jsonb_array_elements(errors) x)),
      jsonb_build_object('errors', errors)::text,
      'create_payment_link(''Annual plan'', amount => 99, currency => ''USD'', asset => ''BTC'')');
  end if;
  insert into invoices_internal.payment_links (merchant_id, slug, title, description, amount, currency, asset,
                                               redirect_url, metadata)
  values (mid, coalesce(slug, invoices_internal.link_slug(title)), btrim(title), description, amount, cur,
          upper(asset), redirect_url, coalesce(metadata, '{}'::jsonb))
  returning * into l;
  insert into invoices_internal.payment_link_slugs (slug, merchant_id, link_id) values (l.slug, l.merchant_id, l.id);
  return invoices_internal.payment_link_object(l);
end
$$;

create or replace function invoices.pay_payment_link(slug text, amount numeric default null) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  owner record;
  l invoices_internal.payment_links;
  price numeric;
  inv jsonb;
  caller text := current_setting('invoices.merchant_id', true);
begin
  -- the slug's owner first, then the link by its key: one shard each on Citus
  select s.merchant_id, s.link_id into owner from invoices_internal.payment_link_slugs s
   where s.slug = pay_payment_link.slug;
  select * into l from invoices_internal.payment_links p
   where p.merchant_id = owner.merchant_id and p.id = owner.link_id
     for update;
  if not found or not l.active then
    perform invoices_internal.raise('P0002', format('payment link %s not found or no longer active', pay_payment_link.slug),
      null, 'ask the merchant for a current link');
  end if;
  if l.amount is not null and amount is not null and amount <> l.amount then
    perform invoices_internal.raise('22023', 'this payment link has a fixed amount',
      jsonb_build_object('errors', jsonb_build_array(jsonb_build_object('field', 'amount',
        'message', format('must be %s %s or left out', l.amount, l.currency))))::text,
      'leave amount out for a fixed-amount link');
  end if;
  price := coalesce(l.amount, amount);
  if price is null or price <= 0 then
    perform invoices_internal.raise('22023', 'this payment link needs an amount',
      '{"errors":[{"field":"amount","message":"the payer chooses the amount: give a positive amount"}]}',
      'pay_payment_link(''<slug>'', amount => 25)');
  end if;
  -- the invoice is created for the link's merchant; the caller's merchant is restored after
  perform set_config('invoices.merchant_id', l.merchant_id::text, true);
  inv := invoices.create_invoice(
    lines => jsonb_build_array(jsonb_build_object('description', l.title, 'unit_price', price::text)),
    currency => l.currency, asset => l.asset, notes => l.description,
    metadata => l.metadata || jsonb_build_object('payment_link', l.slug),
    success_url => l.redirect_url, send => true);
  perform set_config('invoices.merchant_id', coalesce(caller, ''), true);
  update invoices_internal.payment_links set invoices_created = invoices_created + 1
   where merchant_id = l.merchant_id and id = l.id;
  return jsonb_build_object(
    'id', inv->'id', 'slug', inv->'slug', 'invoice_number', inv->'invoice_number', 'status', inv->'status',
    'total', inv->'total', 'currency', inv->'currency', 'asset', inv->'asset', 'asset_amount', inv->'asset_amount',
    'rate', inv->'rate', 'address', inv->'address', 'expires_at', inv->'expires_at', 'hosted_url', inv->'hosted_url',
    'redirect_url', l.redirect_url);
end
$$;

-- The distribution plan on Citus and the function that applies it.
create view invoices_internal.distribution_plan as
select p.table_name, p.kind, p.distribution_column, p.colocate_with, p.position
  from (values
    -- reference: small, global, read by joins with tenant tables on every node
    ('invoices_internal.currencies'::text,  'reference'::text, null::text, null::text, 10),
    ('invoices_internal.chains',            'reference', null, null, 20),
    ('invoices_internal.chain_blocks',      'reference', null, null, 30),
    ('invoices_internal.rate_sources',      'reference', null, null, 40),
    ('invoices_internal.rate_observations', 'reference', null, null, 50),
    ('invoices_internal.server_secrets',    'reference', null, null, 60),
    -- tenant: the colocation anchor, then every table carrying merchant_id
    ('invoices_internal.merchants',           'tenant', 'id',          null, 100),
    ('invoices_internal.invoices',            'tenant', 'merchant_id', 'invoices_internal.merchants', 110),
    ('invoices_internal.invoice_lines',       'tenant', 'merchant_id', 'invoices_internal.merchants', 120),
    ('invoices_internal.quotes',              'tenant', 'merchant_id', 'invoices_internal.merchants', 130),
    ('invoices_internal.audit_log',           'tenant', 'merchant_id', 'invoices_internal.merchants', 140),
    ('invoices_internal.api_keys',            'tenant', 'merchant_id', 'invoices_internal.merchants', 150),
    ('invoices_internal.idempotency_keys',    'tenant', 'merchant_id', 'invoices_internal.merchants', 160),
    ('invoices_internal.wallets',             'tenant', 'merchant_id', 'invoices_internal.merchants', 170),
    ('invoices_internal.addresses',           'tenant', 'merchant_id', 'invoices_internal.merchants', 180),
    ('invoices_internal.address_assignments', 'tenant', 'merchant_id', 'invoices_internal.merchants', 190),
    ('invoices_internal.events',              'tenant', 'merchant_id', 'invoices_internal.merchants', 200),
    ('invoices_internal.webhook_endpoints',   'tenant', 'merchant_id', 'invoices_internal.merchants', 210),
    ('invoices_internal.webhook_deliveries',  'tenant', 'merchant_id', 'invoices_internal.merchants', 220),
    ('invoices_internal.webhook_attempts',    'tenant', 'merchant_id', 'invoices_internal.merchants', 230),
    ('invoices_internal.payments',            'tenant', 'merchant_id', 'invoices_internal.merchants', 240),
    ('invoices_internal.payment_links',       'tenant', 'merchant_id', 'invoices_internal.merchants', 250),
    ('invoices_internal.emails',              'tenant', 'merchant_id', 'invoices_internal.merchants', 260),
    -- routing: each in a colocation group of its own (colocate_with null = 'none')
    ('invoices_internal.payment_link_slugs',  'routing', 'slug',     null, 310),
    ('invoices_internal.api_key_hashes',      'routing', 'key_hash', null, 320),
    ('invoices_internal.wallet_keys',         'routing', 'first_address', null, 330),
    -- local: written by the coordinator's background worker several times a second, read
    -- only by invoices.worker_status; replicating it to every node would buy nothing
    ('invoices_internal.worker_tasks',        'local', null, null, 900)
  ) as p(table_name, kind, distribution_column, colocate_with, position);
comment on view invoices_internal.distribution_plan is
  'How each table of invoices_internal is laid out on Citus: kind tenant (distributed by distribution_column, colocated with colocate_with, or the anchor when null), reference (copied to every node), routing (a global lookup distributed by its own key, in a colocation group of its own) or local (coordinator only); position is the order of the create_reference_table / create_distributed_table calls. Checked without Citus by tests/citus/catalog.sh; applied by invoices.distribute_on_citus().';

-- Applies the plan on a Citus coordinator. Not SECURITY DEFINER: create_distributed_table
-- requires the tables' owner (the superuser who created the extension).
create function invoices.distribute_on_citus() returns setof text
language plpgsql volatile
as $$
declare
  p record;
  known boolean;
  call text;
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'citus') then
    raise exception 'Citus is not installed in database %', pg_catalog.current_database()
      using errcode = '55000',
            hint = 'on every node: shared_preload_libraries = ''citus,invoices'', CREATE EXTENSION citus (then invoices); '
                   'add the workers with citus_add_node() on the coordinator, then call invoices.distribute_on_citus() there';
  end if;
  if coalesce(pg_catalog.current_setting('citus.enable_unsafe_triggers', true), 'off') <> 'on' then
    raise exception 'citus.enable_unsafe_triggers is off: the status machine, audit and append-only triggers cannot be distributed'
      using errcode = '55000',
            hint = 'ALTER SYSTEM SET citus.enable_unsafe_triggers = on on every node (coordinator and workers) and reload';
  end if;
  for p in select * from invoices_internal.distribution_plan order by position loop
    continue when p.kind = 'local';
    if pg_catalog.to_regclass(p.table_name) is null then
      raise exception 'the distribution plan names %, which does not exist', p.table_name
        using errcode = '42P01', hint = 'update the extension (ALTER EXTENSION invoices UPDATE) before distributing it';
    end if;
    -- idempotent: a table Citus already knows is left as it is
    execute 'select exists (select 1 from pg_catalog.pg_dist_partition where logicalrelid = $1::regclass)'
      into known using p.table_name;
    continue when known;
    call := case p.kind
      when 'reference' then pg_catalog.format('select pg_catalog.create_reference_table(%L)', p.table_name)
      else pg_catalog.format('select pg_catalog.create_distributed_table(%L, %L, colocate_with => %L)',
                             p.table_name, p.distribution_column, coalesce(p.colocate_with, 'none'))
    end;
    execute call;
    return next call;
  end loop;
end
$$;
comment on function invoices.distribute_on_citus() is
  'Superuser, on a Citus coordinator: distribute the extension''s tables as invoices_internal.distribution_plan says (reference tables, then merchants and the tables colocated with it by merchant_id, then the routing tables), skipping those already distributed and the local ones. Returns the calls it made. Needs citus.enable_unsafe_triggers = on on every node. Without Citus it raises 55000 with a hint.';
revoke all on invoices_internal.distribution_plan from public;
revoke execute on function invoices.distribute_on_citus() from public;
grant execute on function invoices.distribute_on_citus() to invoices_admin;

create or replace function invoices_internal.expire_and_mark_overdue(out expired integer, out overdue integer)
language plpgsql volatile
as $$
declare
  g record;
  k record;
  locked uuid[];
  n integer;
begin
  -- each row changes through the status trigger: stamped and audited. Candidates are read
  -- without locks, then each merchant's are locked with SKIP LOCKED (rows being paid, cancelled
  -- or swept by someone else are left for the next tick) in one order, so sweeps never wait on
  -- or deadlock with other work; every statement that locks or writes names one merchant (on
  -- Citus: routed to one shard).
  expired := 0;
  overdue := 0;
  for g in select i.merchant_id, array_agg(i.id) as ids from invoices_internal.invoices i
            where i.status in ('pending', 'overdue') and i.amount_paid = 0 and i.expires_at <= now()
            group by i.merchant_id order by i.merchant_id
  loop
    locked := '{}';
    for k in select i.id, i.status, i.amount_paid, i.expires_at from invoices_internal.invoices i
              where i.merchant_id = g.merchant_id and i.id = any (g.ids)
              order by i.id
              for update skip locked
    loop
      -- checked again on the locked (latest) version
      if k.status in ('pending', 'overdue') and k.amount_paid = 0 and k.expires_at <= now() then
        locked := locked || k.id;
      end if;
    end loop;
    update invoices_internal.invoices i set status = 'expired'
     where i.merchant_id = g.merchant_id and i.id = any (locked);
    get diagnostics n = row_count;
    expired := expired + n;
  end loop;
  for g in select i.merchant_id, array_agg(i.id) as ids from invoices_internal.invoices i
            where i.status in ('pending', 'partial') and i.due_date < current_date
            group by i.merchant_id order by i.merchant_id
  loop
    locked := '{}';
    for k in select i.id, i.status, i.due_date from invoices_internal.invoices i
              where i.merchant_id = g.merchant_id and i.id = any (g.ids)
              order by i.id
              for update skip locked
    loop
      if k.status in ('pending', 'partial') and k.due_date < current_date then
        locked := locked || k.id;
      end if;
    end loop;
    update invoices_internal.invoices i set status = 'overdue'
     where i.merchant_id = g.merchant_id and i.id = any (locked);
    get diagnostics n = row_count;
    overdue := overdue + n;
  end loop;
end
$$;

create or replace function invoices_internal.claim_deliveries(n integer, lease_seconds integer)
returns table (merchant_id uuid, id bigint, url text, secret text, event text, event_id uuid, body text, attempt integer)
language plpgsql volatile
as $$
declare
  lease timestamptz := now() + make_interval(secs => lease_seconds);
  g record;
  k record;
  locked bigint[];
begin
  -- the n most overdue deliveries are read without locks; each merchant's are then locked with
  -- SKIP LOCKED (another worker may hold some) and leased in statements naming that merchant
  for g in select d.merchant_id as mid, array_agg(d.id) as ids
             from (select x.merchant_id, x.id from invoices_internal.webhook_deliveries x
                    where (x.status = 'pending' and x.next_attempt_at <= now())
                       or (x.status = 'delivering' and x.lease_until < now())
                    order by x.next_attempt_at
                    limit n) d
            group by d.merchant_id
  loop
    locked := '{}';
    -- locked by key (the due index would scan every due row), then checked again: a row that
    -- changed since the read above is locked in its latest version
    for k in select x.id, x.status, x.next_attempt_at, x.lease_until from invoices_internal.webhook_deliveries x
              where x.merchant_id = g.mid and x.id = any (g.ids)
              order by x.id
              for update skip locked
    loop
      if (k.status = 'pending' and k.next_attempt_at <= now()) or (k.status = 'delivering' and k.lease_until < now()) then
        locked := locked || k.id;
      end if;
    end loop;
    return query
    with claimed as (
      update invoices_internal.webhook_deliveries d
         set status = 'delivering', lease_until = lease
       where d.merchant_id = g.mid and d.id = any (locked)
      returning d.*
    )
    select c.merchant_id, c.id, c.url,
           coalesce(c.secret, (select e.secret from invoices_internal.webhook_endpoints e
                                where e.merchant_id = g.mid and e.id = c.endpoint_id)),
           v.event, v.id,
           jsonb_build_object('id', v.id, 'event', v.event,
                              'timestamp', to_char(v.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                              'data', v.data)::text,
           c.attempts + 1
      from claimed c
      join invoices_internal.events v on v.merchant_id = g.mid and v.id = c.event_id;
  end loop;
end
$$;

create or replace function invoices_internal.record_deliveries(outcomes jsonb) returns integer
language plpgsql volatile
as $$
declare
  at_now timestamptz := now();
  -- when each retry is due if it fails now (the schedule's steps from now)
  retry_at timestamptz[] := array(select at_now + x from unnest(invoices_internal.retry_schedule()) with ordinality u(x, n) order by n);
  g record;
  m integer;
  n integer := 0;
begin
  insert into invoices_internal.webhook_attempts (merchant_id, delivery_id, attempt, started_at, latency_ms,
                                                  status_code, response_excerpt, error)
  select a.merchant_id, a.id, a.attempt, timestamptz 'epoch' + a.started_unix_ms * interval '1 millisecond',
         a.latency_ms, a.status_code, a.excerpt, a.error
    from jsonb_to_recordset(outcomes) as a(merchant_id uuid, id bigint, attempt integer, started_unix_ms bigint,
                                           latency_ms integer, status_code integer, excerpt text, error text)
  on conflict do nothing;
  -- one UPDATE per merchant (on Citus: routed to its shard); times are computed here, not in
  -- the statement (Citus refuses a mutable function inside CASE)
  for g in select distinct x.merchant_id as mid from jsonb_to_recordset(outcomes) as x(merchant_id uuid)
  loop
    update invoices_internal.webhook_deliveries d
       set status = case when o.ok then 'delivered' when o.attempt > d.max_retries then 'dead' else 'pending' end,
           attempts = o.attempt,
           lease_until = null,
           last_status_code = o.status_code,
           last_error = case when o.ok then null else coalesce(o.error, format('HTTP %s', o.status_code)) end,
           delivered_at = case when o.ok then at_now else d.delivered_at end,
           next_attempt_at = case when o.ok or o.attempt > d.max_retries then d.next_attempt_at
                                  else coalesce(retry_at[least(o.attempt, cardinality(retry_at))], at_now + interval '1 minute') end
      from (select x.*, x.error is null and coalesce(x.status_code between 200 and 299, false) as ok
              from jsonb_to_recordset(outcomes) as x(merchant_id uuid, id bigint, attempt integer,
                                                     status_code integer, error text)
             where x.merchant_id = g.mid) o
     where d.merchant_id = g.mid and d.id = o.id and d.status = 'delivering';
    get diagnostics m = row_count;
    n := n + m;
  end loop;
  return n;
end
$$;

create or replace function invoices_internal.release_delivery_leases() returns integer
language plpgsql volatile
as $$
declare
  n integer;
begin
  update invoices_internal.webhook_deliveries
     set status = 'pending', lease_until = null, next_attempt_at = least(next_attempt_at, now())
   where status = 'delivering';
  get diagnostics n = row_count;
  return n;
end
$$;

create or replace function invoices_internal.claim_due_rate_sources()
returns setof invoices_internal.rate_sources
language plpgsql volatile
as $$
declare
  s invoices_internal.rate_sources;
  next_at timestamptz;
begin
  for s in select * from invoices_internal.rate_sources
            where enabled and next_fetch_at <= now()
            order by id
            for update skip locked
  loop
    next_at := now() + make_interval(secs => s.interval_seconds);
    update invoices_internal.rate_sources set next_fetch_at = next_at, last_fetch_at = now()
     where id = s.id
    returning * into s;
    return next s;
  end loop;
end
$$;

create or replace function invoices_internal.record_rate_fetch(source_id bigint, rate numeric, error text)
returns void
language plpgsql volatile
as $$
declare
  s invoices_internal.rate_sources;
  next_at timestamptz;
begin
  select * into s from invoices_internal.rate_sources where id = source_id for update;
  if not found then
    return;
  end if;
  if error is null and rate is not null and rate > 0 then
    next_at := now() + make_interval(secs => s.interval_seconds);
    update invoices_internal.rate_sources
       set last_success_at = now(), last_rate = rate, successes = successes + 1,
           consecutive_failures = 0, next_fetch_at = next_at
     where id = source_id;
    insert into invoices_internal.rate_observations (asset, currency, source, rate)
    values (s.asset, s.currency, s.name, rate);
  else
    next_at := now() + least(make_interval(secs => s.interval_seconds) * power(2, least(s.consecutive_failures + 1, 12)),
                             interval '1 hour');
    update invoices_internal.rate_sources
       set last_error = coalesce(error, 'no rate'), last_error_at = now(), failures = failures + 1,
           consecutive_failures = consecutive_failures + 1, next_fetch_at = next_at
     where id = source_id;
  end if;
end
$$;

create or replace function invoices_internal.housekeeping(out keys_touched integer, out idempotency_keys_expired integer)
language plpgsql volatile
as $$
declare
  u record;
  mid uuid;
  n integer;
begin
  -- the counters live in this node's shared memory: read here, then each key written by its
  -- owner's key (one merchant per statement)
  keys_touched := 0;
  for u in select c.key_id, to_timestamp(c.last_used_unix) as used_at from invoices_internal.api_key_usage() c
  loop
    select x.merchant_id into mid from invoices_internal.api_keys x where x.id = u.key_id;
    update invoices_internal.api_keys k set last_used_at = u.used_at
     where k.merchant_id = mid and k.id = u.key_id and (k.last_used_at is null or k.last_used_at < u.used_at);
    get diagnostics n = row_count;
    keys_touched := keys_touched + n;
  end loop;
  delete from invoices_internal.idempotency_keys where created_at < now() - interval '24 hours';
  get diagnostics idempotency_keys_expired = row_count;
end
$$;

create or replace function invoices_internal.watched_addresses(chain text) returns setof text
language plpgsql stable
as $$
begin
  return query
  with c as (select * from invoices_internal.chains x where x.id = watched_addresses.chain),
  w as (
    select w.merchant_id, w.id
      from invoices_internal.wallets w, c
     where w.asset = any (c.assets) and (c.family = 'evm' or w.network = c.network)
  )
  select a.address
    from invoices_internal.addresses a join w on a.merchant_id = w.merchant_id and a.wallet_id = w.id
   where a.invoice_id is not null
  union
  select a.address
    from invoices_internal.addresses a join w on a.merchant_id = w.merchant_id and a.wallet_id = w.id
   where a.invoice_id is null and a.available_at > now()
  union
  select p.address from invoices_internal.payments p
   where p.chain = watched_addresses.chain and p.status in ('mempool', 'in_block');
end
$$;

create or replace function invoices_internal.record_chain_error(chain text, error text) returns void
language plpgsql volatile
as $$
begin
  update invoices_internal.chains c set last_error = record_chain_error.error, last_error_at = now(), last_poll_at = now()
   where c.id = record_chain_error.chain;
end
$$;

create or replace function invoices.revoke_api_key(id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  mid uuid := invoices_internal.require_merchant();
  k invoices_internal.api_keys;
begin
  update invoices_internal.api_keys
     set revoked_at = now()
   where merchant_id = mid and api_keys.id = revoke_api_key.id and revoked_at is null
  returning * into k;
  if not found then   -- revoked before, or not this merchant's
    select * into k from invoices_internal.api_keys where merchant_id = mid and api_keys.id = revoke_api_key.id;
  end if;
  if not found then
    perform invoices_internal.raise('P0002', format('API key %s not found', revoke_api_key.id), null,
      'list your keys with GET /api_keys or select * from invoices.api_keys');
  end if;
  return jsonb_build_object('id', k.id, 'name', k.name, 'prefix', k.prefix,
                            'scopes', to_jsonb(k.scopes), 'revoked_at', k.revoked_at);
end
$$;

create or replace function invoices.delete_webhook_endpoint(id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  mid uuid := invoices_internal.require_merchant();
  e invoices_internal.webhook_endpoints;
begin
  update invoices_internal.webhook_endpoints
     set active = false, deleted_at = now()
   where merchant_id = mid and webhook_endpoints.id = delete_webhook_endpoint.id and deleted_at is null
  returning * into e;
  if not found then   -- deleted before, or not this merchant's
    select * into e from invoices_internal.webhook_endpoints
     where merchant_id = mid and webhook_endpoints.id = delete_webhook_endpoint.id;
  end if;
  if not found then
    perform invoices_internal.raise('P0002', format('webhook endpoint %s not found', delete_webhook_endpoint.id), null,
      'list them with GET /webhook_endpoints');
  end if;
  return jsonb_build_object('id', e.id, 'url', e.url, 'active', e.active, 'deleted_at', e.deleted_at);
end
$$;

create or replace function invoices.deactivate_payment_link(slug text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  mid uuid := invoices_internal.require_merchant();
  l invoices_internal.payment_links;
begin
  update invoices_internal.payment_links p
     set active = false, deactivated_at = now()
   where p.merchant_id = mid and p.slug = deactivate_payment_link.slug and p.deactivated_at is null
  returning * into l;
  if not found then   -- deactivated before, or not this merchant's
    select * into l from invoices_internal.payment_links p
     where p.merchant_id = mid and p.slug = deactivate_payment_link.slug;
  end if;
  if not found then
    perform invoices_internal.raise('P0002', format('payment link %s not found', deactivate_payment_link.slug), null,
      'list them with GET /payment_links');
  end if;
  return invoices_internal.payment_link_object(l);
end
$$;

create or replace function invoices.create_wallet(asset text, xpub text default null, address text default null,
                                       gap_limit integer default 20, network text default 'mainnet')
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  mid uuid := invoices_internal.require_merchant();
  checked jsonb;
  key text;
  owner invoices_internal.wallet_keys;
  w invoices_internal.wallets;
begin
  if (xpub is null) = (address is null) then
    perform invoices_internal.raise('22023', 'invalid wallet: give xpub or address, not both or neither',
      '{"errors":[{"field":"xpub","message":"give an account extended public key, or address for a bring-your-own address"}]}',
      'create_wallet(''BTC'', xpub => ''zpub…'') or create_wallet(''ETH'', address => ''0x…'')');
  end if;
  if gap_limit is null or gap_limit not between 1 and 1000 then
    perform invoices_internal.raise('22023', 'invalid wallet: gap_limit must be between 1 and 1000',
      '{"errors":[{"field":"gap_limit","message":"must be between 1 and 1000 (BIP44 uses 20)"}]}', null);
  end if;
  checked := case when xpub is not null
                  then invoices_internal.derive_wallet_address(asset, network, xpub, 0)
                  else invoices_internal.check_wallet_address(asset, network, address) end;
  if checked ? 'error' then
    perform invoices_internal.raise_error(checked);
  end if;
  -- one merchant per key: payments to a shared key's addresses could not be told apart
  key := checked ->> 'address';
  select * into owner from invoices_internal.wallet_keys k
   where k.first_address = key and k.asset = create_wallet.asset;
  if found and owner.merchant_id <> mid then
    perform invoices_internal.raise('23505',
      format('this %s %s belongs to a wallet of another merchant', create_wallet.asset,
             case when xpub is null then 'address' else 'account key' end),
      jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
        'field', case when xpub is null then 'address' else 'xpub' end,
        'message', 'already a wallet of another merchant: a key or address can belong to one merchant only')))::text,
      'give each merchant an account key of its own (another account index, e.g. m/84''/0''/1''), or another address');
  end if;
  if not found and xpub is null and exists (
       select 1 from invoices_internal.addresses a
         join invoices_internal.wallets x on x.merchant_id = a.merchant_id and x.id = a.wallet_id
        where a.address = key and x.asset = create_wallet.asset) then
    perform invoices_internal.raise('23505',
      format('this %s address is a deposit address of another wallet', create_wallet.asset),
      '{"errors":[{"field":"address","message":"already dealt out by a wallet derived from an account key"}]}',
      'give an address no wallet derives');
  end if;
  -- the new (or reactivated) wallet replaces the merchant's active one for that asset
  update invoices_internal.wallets set active = false
   where merchant_id = mid and wallets.asset = create_wallet.asset and active
     and id is distinct from owner.wallet_id;
  if owner.wallet_id is not null then
    -- the merchant's own key again: its wallet, with the addresses it derived
    update invoices_internal.wallets
       set active = true, gap_limit = create_wallet.gap_limit, network = create_wallet.network
     where merchant_id = mid and id = owner.wallet_id
    returning * into w;
  else
    insert into invoices_internal.wallets (merchant_id, asset, network, xpub, gap_limit)
    values (mid, create_wallet.asset, create_wallet.network, btrim(create_wallet.xpub), create_wallet.gap_limit)
    returning * into w;
    begin
      insert into invoices_internal.wallet_keys (first_address, asset, merchant_id, wallet_id)
      values (key, create_wallet.asset, mid, w.id);
    exception when unique_violation then
      -- another merchant registered the same key in a concurrent transaction
      perform invoices_internal.raise('23505',
        format('this %s key or address was just registered by another wallet', create_wallet.asset),
        jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
          'field', case when xpub is null then 'address' else 'xpub' end,
          'message', 'already a wallet of another merchant: a key or address can belong to one merchant only')))::text,
        'give each merchant an account key of its own');
    end;
    if address is not null then
      insert into invoices_internal.addresses (merchant_id, wallet_id, address)
      values (mid, w.id, key);
    end if;
  end if;
  return (select to_jsonb(v) from invoices.wallets v where v.merchant_id = mid and v.id = w.id);
end
$$;
comment on function invoices.create_wallet(text, text, text, integer, text) is
  'Watch-only wallet for an asset (BTC, ETH, USDC, KAS) of the current merchant: xpub = the account-level extended public key (BTC zpub/xpub at m/84''/0''/0'', vpub/tpub on test networks; EVM xpub at m/44''/60''/0''; Kaspa kpub/ktub at m/44''/111111''/0''), receive addresses <account>/0/i; or address = one bring-your-own address (EVM: EIP-55 checksummed). Never a private key. gap_limit: derived addresses without a payment allowed at once (default 20). network: mainnet, testnet, regtest, devnet, simnet. Replaces the active wallet of that asset. A key or address belongs to one merchant: another merchant''s raises 23505; the merchant''s own earlier key reactivates that wallet (its derived addresses and next index kept, gap_limit and network as given).';

-- The create path (issue 3): one CHECK for a line instead of five; the sweeps' partial indexes
-- leave out invoices without a deadline or due date.
alter table invoices_internal.invoice_lines
  drop constraint invoice_lines_position_check, drop constraint invoice_lines_description_check,
  drop constraint invoice_lines_quantity_check, drop constraint invoice_lines_unit_price_check,
  drop constraint invoice_lines_amount_check,
  add constraint invoice_lines_valid check (position between 1 and 100 and length(description) between 1 and 500
                                            and quantity > 0 and unit_price >= 0 and amount >= 0);
drop index invoices_internal.invoices_expiring_idx;
create index invoices_expiring_idx on invoices_internal.invoices (expires_at)
  where status in ('pending', 'overdue') and expires_at is not null;
drop index invoices_internal.invoices_due_idx;
create index invoices_due_idx on invoices_internal.invoices (due_date)
  where status in ('pending', 'partial') and due_date is not null;

create or replace function invoices_internal.invoice_before_insert() returns trigger
language plpgsql
as $$
begin
  if new.status = 'pending' then
    new.finalized_at := now();   -- draft -> pending, always legal
  elsif new.status <> 'draft' then
    raise exception 'a new invoice starts as draft, not %', new.status
      using errcode = '23514', hint = 'create it, then call invoices.finalize_invoice';
  end if;
  perform invoices_internal.check_invoice_row(new);
  if new.status = 'pending' then
    perform invoices_internal.emit_events(new, '{invoice.created,invoice.finalized}', null,
                                          '{NULL,draft}', '{draft,pending}');
  else
    perform invoices_internal.emit_events(new, '{invoice.created}', null, '{NULL}', '{draft}');
  end if;
  return new;
end
$$;

create or replace function invoices_internal.invoice_lines_consistent() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  c record;
begin
  -- the invoice as it is now (a draft may have changed since) with its lines, in one read
  select i.invoice_number, i.subtotal, count(l.position) as n, coalesce(sum(l.amount), 0) as total,
         count(*) filter (where l.amount <> round(l.quantity * l.unit_price, i.exponent)
                             or scale(l.amount) <> i.exponent) as bad
    into c
    from invoices_internal.invoices i
    left join invoices_internal.invoice_lines l on l.merchant_id = i.merchant_id and l.invoice_id = i.id
   where i.merchant_id = new.merchant_id and i.id = new.id
   group by i.invoice_number, i.subtotal;
  if not found then
    return null;
  end if;
  if c.n = 0 or c.total <> c.subtotal or c.bad > 0 then
    raise exception 'invoice % has inconsistent lines (% lines summing to %, subtotal %)',
      c.invoice_number, c.n, c.total, c.subtotal
      using errcode = '23514', hint = 'create invoices through invoices.create_invoice';
  end if;
  return null;
end
$$;

-- Trust (issue 19): what a key may do no longer depends on how the URL spells a name. One table
-- maps each function and view of schema invoices to its scope; the functions (authorize) and
-- views (may_read) check it themselves; the pre-request check applies it to the decoded path.
-- Anonymous callers are counted per client address; create_api_key is capped by the operator.
-- Webhook endpoints and callbacks must point to public addresses.
CREATE  FUNCTION invoices_internal."http_route"(
	"method" TEXT, /* & str */
	"path" TEXT /* & str */
) RETURNS TABLE (
	"kind" TEXT,  /* String */
	"object" TEXT  /* String */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'http_route_wrapper';
CREATE  FUNCTION invoices_internal."destination_problem"(
	"url" TEXT /* & str */
) RETURNS TEXT /* Option < String > */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'destination_problem_wrapper';
drop function invoices_internal.required_scope(text, text);
create or replace function invoices_internal.required_scope(method text, path text) returns text
language plpgsql stable
as $$
declare
  r record;
begin
  select * into r from invoices_internal.http_route(method, path);
  return case r.kind
           when 'root' then 'anonymous'
           when 'view_write' then 'method_not_allowed'
           when 'unreadable' then 'admin'
           else invoices_internal.needed_scope(r.kind, r.object)
         end;
end
$$;
alter function invoices_internal.prepare_invoice(jsonb) stable;
alter function invoices_internal.prepare_new_invoice(jsonb) stable;

create table invoices_internal.access_rules (
  kind   text not null check (kind in ('function', 'view')),
  object text not null,   -- the function's or view's name in schema invoices
  scope  text not null check (scope in ('anonymous', 'public_read', 'read', 'write', 'webhooks', 'admin', 'sql')),
  primary key (kind, object)
);
comment on table invoices_internal.access_rules is
  'The scope each function and view of schema invoices needs over HTTP: anonymous (anyone), public_read (anyone; with a key, read), read, write, webhooks, admin (a key with admin may use everything but sql), sql (never over HTTP).';
insert into invoices_internal.access_rules (kind, object, scope) values
  -- SQL door only: operators and data teams
  ('function', 'act_as', 'sql'), ('function', 'create_merchant', 'sql'), ('function', 'set_rate', 'sql'),
  ('function', 'create_rate_source', 'sql'), ('function', 'configure_chain', 'sql'),
  ('function', 'distribute_on_citus', 'sql'),
  -- who controls the merchant's money and keys
  ('function', 'create_api_key', 'admin'), ('function', 'revoke_api_key', 'admin'),
  ('function', 'create_wallet', 'admin'), ('function', 'set_payment_tolerance', 'admin'),
  ('view', 'api_keys', 'admin'),
  -- webhooks: the endpoints receive every event, signed with their secrets
  ('function', 'create_webhook_endpoint', 'webhooks'), ('function', 'delete_webhook_endpoint', 'webhooks'),
  ('function', 'redeliver', 'webhooks'),
  ('view', 'webhook_endpoints', 'webhooks'), ('view', 'webhook_deliveries', 'webhooks'),
  -- invoices and payment links
  ('function', 'create_invoice', 'write'), ('function', 'finalize_invoice', 'write'),
  ('function', 'cancel_invoice', 'write'), ('function', 'requote_invoice', 'write'),
  ('function', 'send_invoice', 'write'), ('function', 'create_payment_link', 'write'),
  ('function', 'deactivate_payment_link', 'write'),
  -- the payer's side: by slug, without a key
  ('function', 'invoice_status', 'public_read'), ('function', 'invoice_pdf', 'public_read'),
  ('function', 'hosted_invoice', 'anonymous'), ('function', 'invoice_viewed', 'anonymous'),
  ('function', 'pay_payment_link', 'anonymous'), ('function', 'verify_webhook_signature', 'anonymous'),
  ('view', 'public_invoices', 'anonymous'), ('view', 'public_payment_links', 'anonymous'),
  -- everything a merchant reads
  ('view', 'invoices', 'read'), ('view', 'invoice_lines', 'read'), ('view', 'audit_log', 'read'),
  ('view', 'quotes', 'read'), ('view', 'rates', 'read'), ('view', 'rate_sources', 'read'),
  ('view', 'wallets', 'read'), ('view', 'addresses', 'read'), ('view', 'events', 'read'),
  ('view', 'chains', 'read'), ('view', 'payments', 'read'), ('view', 'payment_links', 'read'),
  ('view', 'emails', 'read'), ('view', 'worker_status', 'read'),
  ('view', 'receivables_aging', 'read'), ('view', 'revenue_by_month', 'read'),
  ('view', 'payment_conversion', 'read'), ('view', 'days_to_pay', 'read'),
  ('view', 'open_exposure', 'read'), ('view', 'fx_gain_loss', 'read');

-- The scopes of the HTTP caller: its API key's, or {anonymous}; null in a SQL session.
create function invoices_internal.http_scopes() returns text[]
language sql stable
begin atomic
  select case when coalesce(current_setting('request.method', true), '') <> ''
                   or session_user = 'invoices_authenticator'::name
              then string_to_array(coalesce(nullif(current_setting('invoices.api_key_scopes', true), ''),
                                            'anonymous'), ',')
         end;
end;

-- The scope an object needs: its rule, else write for a function and read for a view.
create function invoices_internal.needed_scope(kind text, object text) returns text
language sql stable
begin atomic
  select coalesce((select a.scope from invoices_internal.access_rules a
                    where a.kind = needed_scope.kind and a.object = needed_scope.object),
                  case needed_scope.kind when 'function' then 'write' else 'read' end);
end;

-- Raises 401 (no key) or 403 (the key lacks the scope) unless `scopes` grant `need`.
create function invoices_internal.check_scope(need text, scopes text[], what text) returns void
language plpgsql stable
as $$
begin
  if need = 'anonymous'
     or (need = 'public_read' and (scopes = '{anonymous}' or scopes && '{read,admin}'))
     or (need not in ('sql', 'public_read') and scopes && array[need, 'admin']) then
    return;
  end if;
  if need = 'sql' then
    perform invoices_internal.raise('42501', format('%s is not available over HTTP', what), null,
      'operators call it in SQL, as a member of invoices_admin');
  elsif scopes = '{anonymous}' then
    perform invoices_internal.raise('28000', 'an API key is required', null,
      'send it as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;
  need := replace(need, 'public_', '');
  perform invoices_internal.raise('42501', format('this API key lacks the %s scope', need), null,
    format('create a key with scopes => ''{%s}'' (this one has %s)', need, array_to_string(scopes, ', ')));
end
$$;

-- The first declaration of every public function (authorized boolean := authorize('name')), so
-- it runs before anything else the function does: over HTTP the caller's key must hold the
-- function's scope. A function that passed lets the functions it calls run for it
-- (pay_payment_link, anonymous, creates the link's invoice with create_invoice).
create function invoices_internal.authorize(object text) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  scopes text[] := invoices_internal.http_scopes();
begin
  if scopes is null or coalesce(current_setting('invoices.authorized_call', true), '') <> '' then
    return true;
  end if;
  perform invoices_internal.check_scope(invoices_internal.needed_scope('function', object), scopes,
                                        format('invoices.%s()', object));
  perform set_config('invoices.authorized_call', object, true);
  return true;
end
$$;

-- In the WHERE of every view, with caller => current_user: over HTTP the caller's key must
-- hold the view's scope. Reads by the extension's own functions (caller is the owner) pass.
-- Stable with constant arguments, so PostgreSQL evaluates it once, before any row is read.
create function invoices_internal.may_read(object text, caller name) returns boolean
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  scopes text[] := invoices_internal.http_scopes();
begin
  if scopes is not null and caller <> current_user then
    perform invoices_internal.check_scope(invoices_internal.needed_scope('view', object), scopes,
                                          format('invoices.%s', object));
  end if;
  return true;
end
$$;

create or replace function invoices_internal.http_scopes() returns text[]
language sql stable
begin atomic
  select case when coalesce(current_setting('request.method', true), '') <> ''
                   or session_user = 'invoices_authenticator'::name
              then string_to_array(coalesce(nullif(current_setting('invoices.api_key_scopes', true), ''),
                                            'anonymous'), ',')
         end;
end;

create or replace function invoices_internal.count_request(bucket uuid, per_minute integer, who text) returns void
language plpgsql volatile
as $$
declare
  -- counted in shared memory: the 429 below rolls this transaction back, the count stays
  rl bigint[] := invoices_internal.rate_limit_hit(bucket, per_minute);  -- {allowed, limit, remaining, reset_at, retry_after}
  limits text := format('"X-RateLimit-Limit": "%s", "X-RateLimit-Remaining": "%s", "X-RateLimit-Reset": "%s"',
                        rl[2], rl[3], rl[4]);
begin
  if rl[1] = 0 then
    perform set_config('invoices.response_headers',
                       format('{%s, "Retry-After": "%s"}', limits, rl[5]), true);
    perform invoices_internal.raise('54000',
      format('rate limit exceeded: %s requests per minute for %s', rl[2], who), null,
      format('retry after %s seconds (Retry-After)', rl[5]));
  end if;
  perform set_config('invoices.response_headers', '{' || limits || '}', true),
          set_config('response.headers', '[{' || replace(limits, ', ', '}, {') || '}]', true);
end
$$;

create or replace function invoices_internal.public_lookup_allowed() returns boolean
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  q text;
begin
  if coalesce(current_setting('request.method', true), '') = '' then
    return true;
  end if;
  q := current_query();
  -- the public views answer a single id= / slug= lookup over HTTP, never a listing
  if q ~ 'FROM "invoices"\."public_(invoices|payment_links)"'
     and not exists (
       select 1 from regexp_matches(q, 'FROM "invoices"\."(public_invoices|public_payment_links)"(.{0,200})', 'g') m
        where m[2] !~ ('^\s+WHERE\s+"invoices"\."' || m[1] || '"\."(id|slug)" = \$\d+\s+(LIMIT|ORDER BY|\))')) then
    return true;
  end if;
  perform invoices_internal.raise('22023', 'public invoices and payment links are read one at a time, by id or slug',
    '{"errors":[{"field":"id","message":"filter by id=eq.<uuid> or slug=eq.<slug>, and nothing else"}]}',
    'GET /public_invoices?slug=eq.<slug> (the slug is in the hosted URL)');
  return false;
end
$$;
revoke execute on function invoices_internal.http_route(text, text), invoices_internal.destination_problem(text),
  invoices_internal.http_scopes(), invoices_internal.needed_scope(text, text),
  invoices_internal.check_scope(text, text[], text), invoices_internal.required_scope(text, text),
  invoices_internal.count_request(uuid, integer, text) from public;
revoke all on invoices_internal.access_rules from public;
revoke execute on function invoices_internal.may_read(text, name), invoices_internal.authorize(text) from public;
grant execute on function invoices_internal.may_read(text, name), invoices_internal.authorize(text) to public;

create or replace view invoices.invoices with (security_barrier) as
select r.*
  from invoices_internal.invoice_rows r
 where r.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('invoices', current_user);

create or replace view invoices.invoice_lines with (security_barrier) as
select l.merchant_id, l.invoice_id, i.invoice_number, l.position, l.description,
       l.quantity, l.unit_price, l.amount, i.currency
  from invoices_internal.invoice_lines l
  join invoices_internal.invoices i on i.merchant_id = l.merchant_id and i.id = l.invoice_id
 where l.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('invoice_lines', current_user);

create or replace view invoices.audit_log with (security_barrier) as
select a.merchant_id, a.id, a.invoice_id, i.invoice_number, a.from_status, a.to_status,
       a.event, a.actor, a.at
  from invoices_internal.audit_log a
  join invoices_internal.invoices i on i.merchant_id = a.merchant_id and i.id = a.invoice_id
 where a.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('audit_log', current_user);

create or replace view invoices.api_keys with (security_barrier) as
select k.merchant_id, k.id, k.name, k.prefix, k.scopes, k.rate_limit_per_minute,
       k.created_at, k.created_by, k.revoked_at, k.revoked_at is null as active,
       greatest(k.last_used_at, to_timestamp(u.last_used_unix)) as last_used_at
  from invoices_internal.api_keys k
  left join invoices_internal.api_key_usage() u on u.key_id = k.id
 where k.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('api_keys', current_user);

create or replace view invoices.public_invoices as
select r.id, r.slug, r.invoice_number, r.status, r.currency,
       r.subtotal, r.tax_rate, r.tax_amount, r.discount_amount, r.total, r.amount_paid, r.amount_due,
       r.lines, r.merchant ->> 'name' as merchant_name, r.issue_date, r.due_date, r.notes,
       r.hosted_url, r.pdf_url, r.asset, r.asset_amount, r.rate, r.address, r.expires_at,
       r.confirmations, r.overpaid, r.paid_late,
       r.created_at, r.finalized_at, r.partially_paid_at, r.paid_at, r.confirmed_at,
       r.expired_at, r.overdue_at, r.cancelled_at
  from invoices_internal.invoice_rows r
 where r.finalized_at is not null
   and invoices_internal.public_lookup_allowed() and invoices_internal.may_read('public_invoices', current_user);

create or replace view invoices.rate_sources as
select id, name, format, url, asset, currency, enabled, interval_seconds, timeout_ms,
       next_fetch_at, last_fetch_at, last_success_at, last_rate, last_error, last_error_at,
       successes, failures, consecutive_failures
  from invoices_internal.rate_sources
 where invoices_internal.may_read('rate_sources', current_user);

create or replace view invoices.rates as
with latest as (
  select distinct on (o.asset, o.currency, o.source)
         o.asset, o.currency, o.source, o.rate, o.observed_at
    from invoices_internal.rate_observations o
   order by o.asset, o.currency, o.source, o.observed_at desc
), aged as (
  select l.*, extract(epoch from now() - l.observed_at)::numeric(12, 1) as age_seconds,
         l.observed_at > now() - current_setting('invoices.rate_max_age_seconds')::interval as fresh
    from latest l
)
select a.asset, a.currency, a.source, a.rate, a.observed_at, a.age_seconds, a.fresh,
       invoices_internal.median_rate(array_agg(a.rate) filter (where a.fresh)
                                       over (partition by a.asset, a.currency)) as median_rate
  from aged a
 where invoices_internal.may_read('rates', current_user);

create or replace view invoices.quotes with (security_barrier) as
select q.merchant_id, q.invoice_id, i.invoice_number, q.id, q.asset, q.currency, q.amount, q.rate,
       q.rate_sources, q.markup_percent, q.asset_amount, q.created_at, q.expires_at,
       q.id = (select q2.id from invoices_internal.quotes q2
                where q2.merchant_id = q.merchant_id and q2.invoice_id = q.invoice_id
                order by q2.created_at desc limit 1) as current
  from invoices_internal.quotes q
  join invoices_internal.invoices i on i.merchant_id = q.merchant_id and i.id = q.invoice_id
 where q.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('quotes', current_user);

create or replace view invoices.wallets with (security_barrier) as
select w.merchant_id, w.id, w.asset, w.network, w.xpub, w.xpub is null as bring_your_own,
       case when w.xpub is null then
         (select a.address from invoices_internal.addresses a
           where a.merchant_id = w.merchant_id and a.wallet_id = w.id limit 1) end as address,
       w.gap_limit, w.next_index as derived_addresses, w.active, w.created_at,
       (select count(*) from invoices_internal.addresses a
         where a.merchant_id = w.merchant_id and a.wallet_id = w.id and a.invoice_id is not null) as addresses_in_use
  from invoices_internal.wallets w
 where w.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('wallets', current_user);

create or replace view invoices.addresses with (security_barrier) as
select a.merchant_id, a.wallet_id, w.asset, w.network, a.id, a.address, a.derivation_index,
       case when a.invoice_id is not null then 'assigned'
            when a.available_at > now() then 'paused'
            else 'free' end as state,
       i.invoice_number, a.invoice_id, a.last_invoice_id, a.available_at, a.times_assigned,
       a.first_paid_at, a.created_at
  from invoices_internal.addresses a
  join invoices_internal.wallets w on w.merchant_id = a.merchant_id and w.id = a.wallet_id
  left join invoices_internal.invoices i on i.merchant_id = a.merchant_id and i.id = a.invoice_id
 where a.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('addresses', current_user);

create or replace view invoices.events with (security_barrier) as
select v.merchant_id, v.id, v.event, v.invoice_id, v.data, v.created_at
  from invoices_internal.events v
 where v.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('events', current_user);

create or replace view invoices.webhook_endpoints with (security_barrier) as
select e.merchant_id, e.id, e.url, e.events, e.description, e.active, e.created_at, e.deleted_at
  from invoices_internal.webhook_endpoints e
 where e.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('webhook_endpoints', current_user);

create or replace view invoices.webhook_deliveries with (security_barrier) as
select d.merchant_id, d.id, d.event_id, v.event, d.endpoint_id, d.endpoint_id is null as invoice_callback,
       d.url, d.status, d.attempts, d.max_retries, d.next_attempt_at, d.last_status_code, d.last_error,
       d.delivered_at, d.created_at,
       (select jsonb_agg(jsonb_build_object('attempt', a.attempt, 'started_at', a.started_at,
                                            'latency_ms', a.latency_ms, 'status_code', a.status_code,
                                            'response', a.response_excerpt, 'error', a.error) order by a.attempt)
          from invoices_internal.webhook_attempts a
         where a.merchant_id = d.merchant_id and a.delivery_id = d.id) as attempt_log
  from invoices_internal.webhook_deliveries d
  join invoices_internal.events v on v.merchant_id = d.merchant_id and v.id = d.event_id
 where d.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('webhook_deliveries', current_user);

create or replace view invoices.payments with (security_barrier) as
select p.merchant_id, p.id, p.invoice_id, i.invoice_number, p.chain, p.txid, p.output_index, p.address,
       p.asset, p.amount, p.amount_base, p.status,
       case when p.block_height is null or p.status = 'reverted' then 0
            else greatest(c.tip_height - p.block_height + 1, 0) end as confirmations,
       p.block_height, p.block_hash, p.late, p.detected_at, p.confirmed_at, p.reverted_at
  from invoices_internal.payments p
  join invoices_internal.chains c on c.id = p.chain
  left join invoices_internal.invoices i on i.merchant_id = p.merchant_id and i.id = p.invoice_id
 where p.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('payments', current_user);

create or replace view invoices.payment_links with (security_barrier) as
select l.merchant_id, l.id, l.slug, l.title, l.description, l.amount, l.currency, l.asset, l.redirect_url,
       l.metadata, l.active, l.invoices_created, l.created_at, l.deactivated_at
  from invoices_internal.payment_links l
 where l.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('payment_links', current_user);

create or replace view invoices.public_payment_links as
select l.slug, l.title, l.description, l.amount, l.currency, l.asset,
       (select m.name from invoices_internal.merchants m where m.id = l.merchant_id) as merchant_name
  from invoices_internal.payment_links l
 where l.active and invoices_internal.public_lookup_allowed()
   and invoices_internal.may_read('public_payment_links', current_user);

create or replace view invoices.receivables_aging with (security_barrier) as
with open as (
  select i.merchant_id, i.currency, greatest(i.total - i.amount_paid, 0) as due,
         case when i.due_date is null or i.due_date >= current_date then 'current'
              when current_date - i.due_date <= 30 then '1-30'
              when current_date - i.due_date <= 60 then '31-60'
              when current_date - i.due_date <= 90 then '61-90'
              else '90+' end as bucket
    from invoices_internal.invoices i
   where i.status in ('pending', 'partial', 'overdue')
     and i.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('receivables_aging', current_user)
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

create or replace view invoices.revenue_by_month with (security_barrier) as
select i.merchant_id, date_trunc('month', i.paid_at)::date as month, i.currency, i.asset,
       count(*) as paid_invoices,
       sum(i.amount_paid) as revenue,                         -- in the invoice currency
       sum(i.asset_paid) as asset_received,                   -- in the asset
       sum(round(i.asset_paid * coalesce(q.rate, 1), c.exponent)) as fiat_value_at_quote
  from invoices_internal.invoices i
  join invoices_internal.currencies c on c.code = i.currency
  left join invoices_internal.latest_quotes q on q.merchant_id = i.merchant_id and q.invoice_id = i.id
 where i.status in ('paid', 'confirmed') and i.paid_at is not null
   and i.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('revenue_by_month', current_user)
 group by i.merchant_id, date_trunc('month', i.paid_at), i.currency, i.asset;

create or replace view invoices.payment_conversion with (security_barrier) as
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
   and i.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('payment_conversion', current_user)
 group by i.merchant_id, date_trunc('month', i.finalized_at);

create or replace view invoices.days_to_pay with (security_barrier) as
with paid as (
  select i.merchant_id, extract(epoch from i.paid_at - i.finalized_at) / 86400 as days
    from invoices_internal.invoices i
   where i.paid_at is not null and i.finalized_at is not null
     and i.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('days_to_pay', current_user)
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

create or replace view invoices.open_exposure with (security_barrier) as
with open as (
  select i.merchant_id, q.asset, q.currency, q.rate as quoted_rate,
         greatest(q.asset_amount - i.asset_paid, 0) as outstanding
    from invoices_internal.invoices i
    join invoices_internal.latest_quotes q on q.merchant_id = i.merchant_id and q.invoice_id = i.id
   where i.status in ('pending', 'partial', 'overdue')
     and i.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('open_exposure', current_user)
)
select o.merchant_id, o.asset, o.currency,
       count(*) as open_invoices,
       sum(o.outstanding) as outstanding_asset,
       round(sum(o.outstanding * coalesce(o.quoted_rate, 1)), c.exponent) as value_at_quote,
       r.rate as rate_today,
       round(sum(o.outstanding) * case when o.asset = o.currency then 1 else r.rate end, c.exponent) as value_today
  from open o
  join invoices_internal.currencies c on c.code = o.currency
  left join lateral invoices_internal.current_rate(o.asset, o.currency) r on true
 group by o.merchant_id, o.asset, o.currency, r.rate, c.exponent;

create or replace view invoices.fx_gain_loss with (security_barrier) as
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
   and i.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('fx_gain_loss', current_user);

create or replace view invoices.emails with (security_barrier) as
select e.merchant_id, e.id, e.invoice_id, i.invoice_number, e.recipient as "to", e.status, e.attempts,
       e.max_attempts, e.next_attempt_at, e.last_error, e.relay_response, e.created_at, e.sent_at
  from invoices_internal.emails e
  join invoices_internal.invoices i on i.merchant_id = e.merchant_id and i.id = e.invoice_id
 where e.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('emails', current_user);

create or replace function invoices.act_as(merchant_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('act_as');  -- first: the caller's scope
  m invoices_internal.merchants;
begin
  if act_as.merchant_id is null then
    perform set_config('invoices.merchant_id', '', false);
    return null;
  end if;
  select * into m from invoices_internal.merchants where id = act_as.merchant_id;
  if not found then
    raise exception 'merchant % not found', act_as.merchant_id
      using errcode = 'P0002', hint = 'list merchants with: select id, name from invoices_internal.merchants';
  end if;
  perform set_config('invoices.merchant_id', m.id::text, false);
  return jsonb_build_object('id', m.id, 'name', m.name);
end
$$;

create or replace function invoices.cancel_invoice(ref text) returns jsonb
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

create or replace function invoices.configure_chain(
  id               text,
  family           text,
  rpc_url          text,
  assets           text[],
  network          text default 'mainnet',
  confirmations    integer default 1,
  chain_id         bigint default null,
  tokens           jsonb default '{}'::jsonb,
  start_height     bigint default null,
  poll_interval_ms integer default 1000,
  active           boolean default true
) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('configure_chain');  -- first: the caller's scope
  errors jsonb := '[]';
  allowed text[] := case family when 'evm' then array['ETH', 'USDC'] when 'bitcoin' then array['BTC']
                                when 'kaspa' then array['KAS'] end;
  c invoices_internal.chains;
  t record;
begin
  if id is null or id !~ '^[a-z0-9][a-z0-9_-]{0,39}$' then
    errors := errors || '[{"field": "id", "message": "lowercase letters, digits, - and _ (at most 40)"}]';
  end if;
  if allowed is null then
    errors := errors || '[{"field": "family", "message": "must be evm, bitcoin or kaspa"}]';
  elsif assets is null or cardinality(assets) = 0 or not (assets <@ allowed) then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'assets',
      'message', format('a %s chain carries %s', family, array_to_string(allowed, ', '))));
  end if;
  if rpc_url is null or rpc_url !~ '^(https?|wss?)://[^\s/]+' then
    errors := errors || '[{"field": "rpc_url", "message": "must be an http(s) or ws(s) URL"}]';
  end if;
  if network is null or network not in ('mainnet', 'testnet', 'regtest', 'devnet', 'simnet') then
    errors := errors || '[{"field": "network", "message": "must be mainnet, testnet, regtest, devnet or simnet"}]';
  end if;
  if confirmations is null or confirmations not between 0 and 1000 then
    errors := errors || '[{"field": "confirmations", "message": "must be between 0 and 1000"}]';
  end if;
  if poll_interval_ms is null or poll_interval_ms not between 50 and 3600000 then
    errors := errors || '[{"field": "poll_interval_ms", "message": "must be between 50 and 3600000"}]';
  end if;
  if jsonb_typeof(tokens) is distinct from 'object' then
    errors := errors || '[{"field": "tokens", "message": "must be an object {\"USDC\": {\"contract\": \"0x…\", \"decimals\": 6}}"}]';
  else
    for t in select key, value from jsonb_each(tokens) loop
      if family <> 'evm' or t.key = 'ETH' or not (t.key = any (assets))
         or coalesce(t.value->>'contract', '') !~ '^0x[0-9a-fA-F]{40}$'
         or coalesce(t.value->>'decimals', '') !~ '^[0-9]{1,2}$' then
        errors := errors || jsonb_build_array(jsonb_build_object('field', 'tokens.' || t.key,
          'message', 'an ERC-20 asset of this chain''s assets with {"contract": "0x<40 hex>", "decimals": 0-99}'));
      end if;
    end loop;
  end if;
  if family = 'evm' and 'USDC' = any (assets) and not (tokens ? 'USDC') then
    errors := errors || '[{"field": "tokens.USDC", "message": "give the token contract: {\"USDC\": {\"contract\": \"0x…\", \"decimals\": 6}}"}]';
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023',
      format('invalid chain: %s', (select string_agg(x->>'field', ', ') from jsonb_array_elements(errors) x)),
      jsonb_build_object('errors', errors)::text,
      'configure_chain(''base'', ''evm'', ''http://127.0.0.1:8545'', ''{ETH,USDC}'', chain_id => 8453, tokens => ''{"USDC": {"contract": "0x…", "decimals": 6}}'')');
  end if;
  insert into invoices_internal.chains as ch (id, family, network, rpc_url, chain_id, assets, tokens,
                                              confirmations, poll_interval_ms, start_height, active)
  values (configure_chain.id, family, network, rpc_url, chain_id, assets, tokens, confirmations,
          poll_interval_ms, start_height, active)
  on conflict on constraint chains_pkey do update
     set family = excluded.family, network = excluded.network, rpc_url = excluded.rpc_url,
         chain_id = excluded.chain_id, assets = excluded.assets, tokens = excluded.tokens,
         confirmations = excluded.confirmations, poll_interval_ms = excluded.poll_interval_ms,
         start_height = excluded.start_height, active = excluded.active,
         -- another node, network or start height: scanning starts again
         cursor_height = case when (ch.rpc_url, ch.network, ch.start_height)
                                   is not distinct from (excluded.rpc_url, excluded.network, excluded.start_height)
                              then ch.cursor_height end,
         cursor_hash = case when (ch.rpc_url, ch.network, ch.start_height)
                                 is not distinct from (excluded.rpc_url, excluded.network, excluded.start_height)
                            then ch.cursor_hash end
  returning * into c;
  return jsonb_build_object('id', c.id, 'family', c.family, 'network', c.network, 'assets', to_jsonb(c.assets),
                            'confirmations', c.confirmations, 'active', c.active,
                            'cursor_height', c.cursor_height);
end
$$;

create or replace function invoices.create_api_key(name text default 'API key',
                                        scopes text[] default '{read,write}',
                                        rate_limit_per_minute integer default null)
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_api_key');
begin
  -- a key cannot lift its own rate limit: the operator's ceiling bounds every key made here
  if rate_limit_per_minute > current_setting('invoices.max_rate_limit_per_minute')::int then
    perform invoices_internal.raise('22023',
      format('invalid API key: rate_limit_per_minute must be at most %s',
             current_setting('invoices.max_rate_limit_per_minute')),
      jsonb_build_object('errors', jsonb_build_array(jsonb_build_object('field', 'rate_limit_per_minute',
        'message', format('must be at most %s (invoices.max_rate_limit_per_minute)',
                          current_setting('invoices.max_rate_limit_per_minute')))))::text,
      'leave it null to use invoices.rate_limit_per_minute, or ask the operator to raise invoices.max_rate_limit_per_minute');
  end if;
  return invoices_internal.insert_api_key(invoices_internal.require_merchant(), name, scopes,
                                          rate_limit_per_minute);
end
$$;

create or replace function invoices.create_invoice(
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

  -- One statement writes the invoice, its lines and, when it is sent, the e-mail to the
  -- customer (the worker sends it). The prepared object's keys are the column names: one
  -- jsonb_populate_record reads them instead of a cast per column; the columns decided here
  -- are given as they are (merging them into the object first would sort ~60 keys again).
  with inv as (
    insert into invoices_internal.invoices (merchant_id, id, number_seq, invoice_number, slug, status,
      currency, exponent, subtotal, discount_amount, tax_rate, tax_amount, total, amount_paid, asset_paid,
      customer_email, customer_name, customer_company, customer_address, merchant_snapshot,
      issue_date, due_date, notes, metadata, order_id, asset, markup_percent, confirmations,
      expiry_minutes, pause_minutes, callback_url, callback_secret, attempts_callback, success_url,
      failed_url, expires_at, overpaid, paid_late, created_at, updated_at)
    select mid, new_id, m.seq, new_number, new_slug, new_status,
           r.currency, r.exponent, r.subtotal, r.discount_amount, r.tax_rate, r.tax_amount, r.total, 0, 0,
           r.customer_email, r.customer_name, r.customer_company, r.customer_address,
           jsonb_build_object('name', m.name, 'email', m.email, 'address', m.address),
           r.issue_date, r.due_date, r.notes, r.metadata, r.order_id, r.asset, r.markup_percent, r.confirmations,
           r.expiry_minutes, r.pause_minutes, r.callback_url, r.callback_secret, r.attempts_callback, r.success_url,
           r.failed_url, r.expires_at, false, false, now(), now()
      from jsonb_populate_record(null::invoices_internal.invoices, p) r
    returning merchant_id, id),
  new_lines as (
    insert into invoices_internal.invoice_lines (merchant_id, invoice_id, position, description, quantity, unit_price, amount)
    select inv.merchant_id, inv.id, l.n, l.description, l.quantity, l.unit_price, l.amount
      from inv, rows from (jsonb_to_recordset(p->'lines')
                             as (description text, quantity numeric, unit_price numeric, amount numeric))
                with ordinality l(description, quantity, unit_price, amount, n))
  insert into invoices_internal.emails (merchant_id, invoice_id, recipient, max_attempts)
  select inv.merchant_id, inv.id, p->>'customer_email', invoices_internal.retry_count() + 1
    from inv
   where send and p->>'customer_email' is not null;

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

create or replace function invoices.create_merchant(
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

create or replace function invoices.create_payment_link(
  title        text,
  slug         text default null,
  description  text default null,
  amount       numeric default null,
  currency     text default null,
  asset        text default null,
  redirect_url text default null,
  metadata     jsonb default '{}'::jsonb
) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_payment_link');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  cur text := upper(coalesce(currency, (select m.default_currency from invoices_internal.merchants m where m.id = mid)));
  errors jsonb := '[]';
  l invoices_internal.payment_links;
begin
  if title is null or length(btrim(title)) = 0 or length(title) > 200 then
    errors := errors || '[{"field": "title", "message": "required, at most 200 characters"}]';
  end if;
  if slug is not null and slug !~ '^[a-z0-9][a-z0-9-]{0,79}$' then
    errors := errors || '[{"field": "slug", "message": "lowercase letters, digits and -, at most 80"}]';
  elsif slug is not null and exists (select 1 from invoices_internal.payment_link_slugs p where p.slug = create_payment_link.slug) then
    errors := errors || '[{"field": "slug", "message": "already taken"}]';
  end if;
  if amount is not null and amount <= 0 then
    errors := errors || '[{"field": "amount", "message": "must be positive (or null: the payer chooses)"}]';
  end if;
  if not exists (select 1 from invoices_internal.currencies c where c.code = cur) then
    errors := errors || '[{"field": "currency", "message": "unknown currency"}]';
  end if;
  if asset is not null and asset not in ('BTC', 'ETH', 'USDC', 'KAS') then
    errors := errors || '[{"field": "asset", "message": "must be BTC, ETH, USDC or KAS"}]';
  end if;
  if redirect_url is not null and redirect_url !~ '^https?://' then
    errors := errors || '[{"field": "redirect_url", "message": "must be an http(s) URL"}]';
  end if;
  if metadata is not null and jsonb_typeof(metadata) <> 'object' then
    errors := errors || '[{"field": "metadata", "message": "must be a JSON object"}]';
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023',
      format('invalid payment link: %s', (select string_agg(x->>'field', ', ') from jsonb_array_elements(errors) x)),
      jsonb_build_object('errors', errors)::text,
      'create_payment_link(''Annual plan'', amount => 99, currency => ''USD'', asset => ''BTC'')');
  end if;
  insert into invoices_internal.payment_links (merchant_id, slug, title, description, amount, currency, asset,
                                               redirect_url, metadata)
  values (mid, coalesce(slug, invoices_internal.link_slug(title)), btrim(title), description, amount, cur,
          upper(asset), redirect_url, coalesce(metadata, '{}'::jsonb))
  returning * into l;
  insert into invoices_internal.payment_link_slugs (slug, merchant_id, link_id) values (l.slug, l.merchant_id, l.id);
  return invoices_internal.payment_link_object(l);
end
$$;

create or replace function invoices.create_rate_source(name text, format text, asset text, currency text,
                                            url text default null, interval_seconds integer default 60,
                                            timeout_ms integer default 5000)
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_rate_source');  -- first: the caller's scope
  s invoices_internal.rate_sources;
begin
  if format is null or format not in ('coingecko', 'kraken', 'coinbase') then
    perform invoices_internal.raise('22023', 'invalid rate source: format must be coingecko, kraken or coinbase',
      '{"errors":[{"field":"format","message":"must be coingecko, kraken or coinbase"}]}',
      'the format says how to read the response');
  end if;
  insert into invoices_internal.rate_sources (name, format, url, asset, currency, interval_seconds, timeout_ms)
  values (name, format,
          coalesce(url, invoices_internal.rate_source_url(format, null, asset, currency)),
          asset, currency, interval_seconds, timeout_ms)
  returning * into s;
  return to_jsonb(s);
end
$$;

create or replace function invoices.create_wallet(asset text, xpub text default null, address text default null,
                                       gap_limit integer default 20, network text default 'mainnet')
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_wallet');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  checked jsonb;
  key text;
  owner invoices_internal.wallet_keys;
  w invoices_internal.wallets;
begin
  if (xpub is null) = (address is null) then
    perform invoices_internal.raise('22023', 'invalid wallet: give xpub or address, not both or neither',
      '{"errors":[{"field":"xpub","message":"give an account extended public key, or address for a bring-your-own address"}]}',
      'create_wallet(''BTC'', xpub => ''zpub…'') or create_wallet(''ETH'', address => ''0x…'')');
  end if;
  if gap_limit is null or gap_limit not between 1 and 1000 then
    perform invoices_internal.raise('22023', 'invalid wallet: gap_limit must be between 1 and 1000',
      '{"errors":[{"field":"gap_limit","message":"must be between 1 and 1000 (BIP44 uses 20)"}]}', null);
  end if;
  checked := case when xpub is not null
                  then invoices_internal.derive_wallet_address(asset, network, xpub, 0)
                  else invoices_internal.check_wallet_address(asset, network, address) end;
  if checked ? 'error' then
    perform invoices_internal.raise_error(checked);
  end if;
  -- one merchant per key: payments to a shared key's addresses could not be told apart
  key := checked ->> 'address';
  select * into owner from invoices_internal.wallet_keys k
   where k.first_address = key and k.asset = create_wallet.asset;
  if found and owner.merchant_id <> mid then
    perform invoices_internal.raise('23505',
      format('this %s %s belongs to a wallet of another merchant', create_wallet.asset,
             case when xpub is null then 'address' else 'account key' end),
      jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
        'field', case when xpub is null then 'address' else 'xpub' end,
        'message', 'already a wallet of another merchant: a key or address can belong to one merchant only')))::text,
      'give each merchant an account key of its own (another account index, e.g. m/84''/0''/1''), or another address');
  end if;
  if not found and xpub is null and exists (
       select 1 from invoices_internal.addresses a
         join invoices_internal.wallets x on x.merchant_id = a.merchant_id and x.id = a.wallet_id
        where a.address = key and x.asset = create_wallet.asset) then
    perform invoices_internal.raise('23505',
      format('this %s address is a deposit address of another wallet', create_wallet.asset),
      '{"errors":[{"field":"address","message":"already dealt out by a wallet derived from an account key"}]}',
      'give an address no wallet derives');
  end if;
  -- the new (or reactivated) wallet replaces the merchant's active one for that asset
  update invoices_internal.wallets set active = false
   where merchant_id = mid and wallets.asset = create_wallet.asset and active
     and id is distinct from owner.wallet_id;
  if owner.wallet_id is not null then
    -- the merchant's own key again: its wallet, with the addresses it derived
    update invoices_internal.wallets
       set active = true, gap_limit = create_wallet.gap_limit, network = create_wallet.network
     where merchant_id = mid and id = owner.wallet_id
    returning * into w;
  else
    insert into invoices_internal.wallets (merchant_id, asset, network, xpub, gap_limit)
    values (mid, create_wallet.asset, create_wallet.network, btrim(create_wallet.xpub), create_wallet.gap_limit)
    returning * into w;
    begin
      insert into invoices_internal.wallet_keys (first_address, asset, merchant_id, wallet_id)
      values (key, create_wallet.asset, mid, w.id);
    exception when unique_violation then
      -- another merchant registered the same key in a concurrent transaction
      perform invoices_internal.raise('23505',
        format('this %s key or address was just registered by another wallet', create_wallet.asset),
        jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
          'field', case when xpub is null then 'address' else 'xpub' end,
          'message', 'already a wallet of another merchant: a key or address can belong to one merchant only')))::text,
        'give each merchant an account key of its own');
    end;
    if address is not null then
      insert into invoices_internal.addresses (merchant_id, wallet_id, address)
      values (mid, w.id, key);
    end if;
  end if;
  return (select to_jsonb(v) from invoices.wallets v where v.merchant_id = mid and v.id = w.id);
end
$$;

create or replace function invoices.create_webhook_endpoint(url text, events text[] default '{*}', description text default null)
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_webhook_endpoint');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  known text[] := array['*', 'invoice.created', 'invoice.finalized', 'invoice.viewed', 'invoice.partial',
                        'invoice.paid', 'invoice.confirmed', 'invoice.expired', 'invoice.overdue',
                        'invoice.cancelled', 'invoice.reverted', 'payment.received', 'payment.confirmed', 'payment.reverted'];
  errors jsonb := '[]';
  problem text;
  e invoices_internal.webhook_endpoints;
begin
  problem := coalesce(invoices_internal.destination_problem(url), case when url is null then 'is required' end);
  if problem is not null then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'url', 'message', problem));
  end if;
  if events is null or cardinality(events) = 0 or not (events <@ known) then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'events', 'message',
      'must list events among ' || array_to_string(known, ', ')));
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023',
      format('invalid webhook endpoint: %s', (select string_agg(x->>'field', ', ') from jsonb_array_elements(errors) x)),
      jsonb_build_object('errors', errors)::text, 'create_webhook_endpoint(''https://example.com/hooks'', ''{invoice.paid}'')');
  end if;
  insert into invoices_internal.webhook_endpoints (merchant_id, url, events, description, secret)
  values (mid, url, events, description, invoices_internal.new_webhook_secret())
  returning * into e;
  return jsonb_build_object('id', e.id, 'url', e.url, 'events', to_jsonb(e.events), 'description', e.description,
                            'active', e.active, 'created_at', e.created_at, 'secret', e.secret);
end
$$;

create or replace function invoices.deactivate_payment_link(slug text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('deactivate_payment_link');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  l invoices_internal.payment_links;
begin
  update invoices_internal.payment_links p
     set active = false, deactivated_at = now()
   where p.merchant_id = mid and p.slug = deactivate_payment_link.slug and p.deactivated_at is null
  returning * into l;
  if not found then   -- deactivated before, or not this merchant's
    select * into l from invoices_internal.payment_links p
     where p.merchant_id = mid and p.slug = deactivate_payment_link.slug;
  end if;
  if not found then
    perform invoices_internal.raise('P0002', format('payment link %s not found', deactivate_payment_link.slug), null,
      'list them with GET /payment_links');
  end if;
  return invoices_internal.payment_link_object(l);
end
$$;

create or replace function invoices.distribute_on_citus() returns setof text
language plpgsql volatile
as $$
declare
  authorized boolean := invoices_internal.authorize('distribute_on_citus');  -- first: the caller's scope
  p record;
  known boolean;
  call text;
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'citus') then
    raise exception 'Citus is not installed in database %', pg_catalog.current_database()
      using errcode = '55000',
            hint = 'on every node: shared_preload_libraries = ''citus,invoices'', CREATE EXTENSION citus (then invoices); '
                   'add the workers with citus_add_node() on the coordinator, then call invoices.distribute_on_citus() there';
  end if;
  if coalesce(pg_catalog.current_setting('citus.enable_unsafe_triggers', true), 'off') <> 'on' then
    raise exception 'citus.enable_unsafe_triggers is off: the status machine, audit and append-only triggers cannot be distributed'
      using errcode = '55000',
            hint = 'ALTER SYSTEM SET citus.enable_unsafe_triggers = on on every node (coordinator and workers) and reload';
  end if;
  for p in select * from invoices_internal.distribution_plan order by position loop
    continue when p.kind = 'local';
    if pg_catalog.to_regclass(p.table_name) is null then
      raise exception 'the distribution plan names %, which does not exist', p.table_name
        using errcode = '42P01', hint = 'update the extension (ALTER EXTENSION invoices UPDATE) before distributing it';
    end if;
    -- idempotent: a table Citus already knows is left as it is
    execute 'select exists (select 1 from pg_catalog.pg_dist_partition where logicalrelid = $1::regclass)'
      into known using p.table_name;
    continue when known;
    call := case p.kind
      when 'reference' then pg_catalog.format('select pg_catalog.create_reference_table(%L)', p.table_name)
      else pg_catalog.format('select pg_catalog.create_distributed_table(%L, %L, colocate_with => %L)',
                             p.table_name, p.distribution_column, coalesce(p.colocate_with, 'none'))
    end;
    execute call;
    return next call;
  end loop;
end
$$;

create or replace function invoices.finalize_invoice(ref text) returns jsonb
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

create or replace function invoices.hosted_invoice(slug text) returns invoices."text/html"
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('hosted_invoice');  -- first: the caller's scope
  i invoices_internal.invoices;
begin
  select * into i from invoices_internal.invoices v
   where v.slug = btrim(coalesce(hosted_invoice.slug, '')) and v.finalized_at is not null;
  if not found then
    perform invoices_internal.raise('P0002', format('invoice "%s" not found', hosted_invoice.slug), null,
      'the hosted page shows a finalized invoice by the slug in its URL');
  end if;
  perform set_config('response.headers', '[{"Cache-Control": "no-store"}, {"X-Frame-Options": "DENY"}, {"Referrer-Policy": "no-referrer"}]', true);
  return invoices_internal.render_hosted_page(
    invoices_internal.invoice_document(i.merchant_id, i.id),
    '../rpc/',
    '../rpc/invoice_pdf?ref=' || i.slug,
    (extract(epoch from current_setting('invoices.page_poll_ms')::interval) * 1000)::int,
    (extract(epoch from clock_timestamp()) * 1000)::bigint);
end
$$;

create or replace function invoices.invoice_pdf(ref text) returns invoices."application/pdf"
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('invoice_pdf');  -- first: the caller's scope
  d record;
  doc jsonb;
begin
  select * into d from invoices_internal.document_invoice(ref);
  doc := invoices_internal.invoice_document(d.merchant_id, d.id);
  perform set_config('response.headers', json_build_array(
            json_build_object('Content-Disposition', format('inline; filename="%s.pdf"', doc ->> 'invoice_number')),
            json_build_object('Cache-Control', 'no-store'))::text, true);
  return invoices_internal.render_invoice_pdf(doc);
end
$$;

create or replace function invoices.invoice_status(ref text) returns jsonb
language sql stable security definer
set search_path = pg_catalog
as $$
  select invoices_internal.authorize('invoice_status');  -- first: the caller's scope
  select jsonb_build_object(
           'id', r.id, 'invoice_number', r.invoice_number, 'status', r.status,
           'total', r.total::text, 'amount_paid', r.amount_paid::text,
           'amount_due', r.amount_due::text, 'currency', r.currency,
           'asset', r.asset, 'asset_amount', r.asset_amount::text, 'asset_paid', r.asset_paid::text,
           'address', r.address,
           'expires_at', r.expires_at, 'overpaid', r.overpaid, 'paid_late', r.paid_late)
    from invoices_internal.document_invoice(ref) d
    join invoices_internal.invoice_rows r on r.merchant_id = d.merchant_id and r.id = d.id
$$;

create or replace function invoices.invoice_viewed(slug text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('invoice_viewed');  -- first: the caller's scope
  i invoices_internal.invoices;
  changed invoices_internal.invoices;
begin
  -- found by slug (any merchant), then changed by its key
  select * into i from invoices_internal.invoices v
   where v.slug = btrim(coalesce(invoice_viewed.slug, '')) and v.finalized_at is not null;
  if not found then
    perform invoices_internal.raise('P0002', format('invoice "%s" not found', invoice_viewed.slug), null,
      'pass the slug of a finalized invoice (from its hosted URL)');
  end if;
  if i.viewed_at is null then
    update invoices_internal.invoices v set viewed_at = now()
     where v.merchant_id = i.merchant_id and v.id = i.id and v.viewed_at is null
    returning * into changed;
    if found then
      perform invoices_internal.emit_events(changed, '{invoice.viewed}');
      return jsonb_build_object('slug', changed.slug, 'viewed_at', changed.viewed_at, 'first_view', true);
    end if;
    -- viewed by a concurrent call meanwhile
    select * into i from invoices_internal.invoices v where v.merchant_id = i.merchant_id and v.id = i.id;
  end if;
  return jsonb_build_object('slug', i.slug, 'viewed_at', i.viewed_at, 'first_view', false);
end
$$;

create or replace function invoices.pay_payment_link(slug text, amount numeric default null) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('pay_payment_link');  -- first: the caller's scope
  owner record;
  l invoices_internal.payment_links;
  price numeric;
  inv jsonb;
  caller text := current_setting('invoices.merchant_id', true);
begin
  -- the slug's owner first, then the link by its key: one shard each on Citus
  select s.merchant_id, s.link_id into owner from invoices_internal.payment_link_slugs s
   where s.slug = pay_payment_link.slug;
  select * into l from invoices_internal.payment_links p
   where p.merchant_id = owner.merchant_id and p.id = owner.link_id
     for update;
  if not found or not l.active then
    perform invoices_internal.raise('P0002', format('payment link %s not found or no longer active', pay_payment_link.slug),
      null, 'ask the merchant for a current link');
  end if;
  if l.amount is not null and amount is not null and amount <> l.amount then
    perform invoices_internal.raise('22023', 'this payment link has a fixed amount',
      jsonb_build_object('errors', jsonb_build_array(jsonb_build_object('field', 'amount',
        'message', format('must be %s %s or left out', l.amount, l.currency))))::text,
      'leave amount out for a fixed-amount link');
  end if;
  price := coalesce(l.amount, amount);
  if price is null or price <= 0 then
    perform invoices_internal.raise('22023', 'this payment link needs an amount',
      '{"errors":[{"field":"amount","message":"the payer chooses the amount: give a positive amount"}]}',
      'pay_payment_link(''<slug>'', amount => 25)');
  end if;
  -- the invoice is created for the link's merchant; the caller's merchant is restored after
  perform set_config('invoices.merchant_id', l.merchant_id::text, true);
  inv := invoices.create_invoice(
    lines => jsonb_build_array(jsonb_build_object('description', l.title, 'unit_price', price::text)),
    currency => l.currency, asset => l.asset, notes => l.description,
    metadata => l.metadata || jsonb_build_object('payment_link', l.slug),
    success_url => l.redirect_url, send => true);
  perform set_config('invoices.merchant_id', coalesce(caller, ''), true);
  update invoices_internal.payment_links set invoices_created = invoices_created + 1
   where merchant_id = l.merchant_id and id = l.id;
  return jsonb_build_object(
    'id', inv->'id', 'slug', inv->'slug', 'invoice_number', inv->'invoice_number', 'status', inv->'status',
    'total', inv->'total', 'currency', inv->'currency', 'asset', inv->'asset', 'asset_amount', inv->'asset_amount',
    'rate', inv->'rate', 'address', inv->'address', 'expires_at', inv->'expires_at', 'hosted_url', inv->'hosted_url',
    'redirect_url', l.redirect_url);
end
$$;

create or replace function invoices.requote_invoice(ref text) returns jsonb
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

create or replace function invoices.revoke_api_key(id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('revoke_api_key');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  k invoices_internal.api_keys;
begin
  update invoices_internal.api_keys
     set revoked_at = now()
   where merchant_id = mid and api_keys.id = revoke_api_key.id and revoked_at is null
  returning * into k;
  if not found then   -- revoked before, or not this merchant's
    select * into k from invoices_internal.api_keys where merchant_id = mid and api_keys.id = revoke_api_key.id;
  end if;
  if not found then
    perform invoices_internal.raise('P0002', format('API key %s not found', revoke_api_key.id), null,
      'list your keys with GET /api_keys or select * from invoices.api_keys');
  end if;
  return jsonb_build_object('id', k.id, 'name', k.name, 'prefix', k.prefix,
                            'scopes', to_jsonb(k.scopes), 'revoked_at', k.revoked_at);
end
$$;

create or replace function invoices.send_invoice(ref text, to_email text default null) returns jsonb
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

create or replace function invoices.set_payment_tolerance(percent numeric) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('set_payment_tolerance');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
begin
  if percent is null or percent < 0 or percent >= 100 then
    perform invoices_internal.raise('22023', 'invalid payment tolerance',
      '{"errors":[{"field":"percent","message":"must be at least 0 and below 100"}]}',
      'set_payment_tolerance(0.5): an invoice missing at most 0.5 % counts as paid');
  end if;
  update invoices_internal.merchants set payment_tolerance_percent = percent where id = mid;
  return jsonb_build_object('merchant_id', mid, 'payment_tolerance_percent', percent);
end
$$;

create or replace function invoices.set_rate(asset text, currency text, rate numeric, source text default 'manual')
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('set_rate');  -- first: the caller's scope
  errors jsonb := '[]';
begin
  if asset is null or asset not in ('BTC', 'ETH', 'USDC', 'KAS') then
    errors := errors || '[{"field": "asset", "message": "must be one of BTC, ETH, USDC, KAS"}]';
  end if;
  if currency is null or not invoices_internal.is_currency(currency) then
    errors := errors || '[{"field": "currency", "message": "must be a known currency code such as USD"}]';
  end if;
  if rate is null or rate <= 0 then
    errors := errors || '[{"field": "rate", "message": "must be a positive number (currency per 1 asset)"}]';
  end if;
  if source is null or length(btrim(source)) not between 1 and 100 then
    errors := errors || '[{"field": "source", "message": "must be 1 to 100 characters"}]';
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023',
      format('invalid rate: %s', (select string_agg(e->>'field', ', ') from jsonb_array_elements(errors) e)),
      jsonb_build_object('errors', errors)::text, 'set_rate(''BTC'', ''USD'', 67187.33)');
  end if;
  insert into invoices_internal.rate_observations (asset, currency, source, rate)
  values (set_rate.asset, set_rate.currency, btrim(set_rate.source), set_rate.rate);
  return (select to_jsonb(r) from invoices.rates r
           where r.asset = set_rate.asset and r.currency = set_rate.currency and r.source = btrim(set_rate.source));
end
$$;

create or replace function invoices.verify_webhook_signature(body text, signature_header text, secret text,
                                                  tolerance_seconds integer default 300)
returns boolean
language sql stable
as $$
  select invoices_internal.authorize('verify_webhook_signature');
  select invoices_internal.verify_signature(body, signature_header, secret, tolerance_seconds)
$$;
comment on function invoices.create_api_key(text, text[], integer) is
  'Create an API key for the current merchant (admin scope). scopes: any of read, write, webhooks, admin (default {read,write}). rate_limit_per_minute overrides the invoices.rate_limit_per_minute setting for this key, up to the operator''s invoices.max_rate_limit_per_minute. Returns {id, name, prefix, scopes, created_at, api_key}: api_key is shown this once (only its SHA-256 is stored). Send it as X-API-Key: <key> or Authorization: Bearer <key>.';

create or replace view invoices_internal.distribution_plan as
select p.table_name, p.kind, p.distribution_column, p.colocate_with, p.position
  from (values
    -- reference: small, global, read by joins with tenant tables on every node
    ('invoices_internal.currencies'::text,  'reference'::text, null::text, null::text, 10),
    ('invoices_internal.chains',            'reference', null, null, 20),
    ('invoices_internal.chain_blocks',      'reference', null, null, 30),
    ('invoices_internal.rate_sources',      'reference', null, null, 40),
    ('invoices_internal.rate_observations', 'reference', null, null, 50),
    ('invoices_internal.server_secrets',    'reference', null, null, 60),
    ('invoices_internal.access_rules',      'reference', null, null, 65),
    -- tenant: the colocation anchor, then every table carrying merchant_id
    ('invoices_internal.merchants',           'tenant', 'id',          null, 100),
    ('invoices_internal.invoices',            'tenant', 'merchant_id', 'invoices_internal.merchants', 110),
    ('invoices_internal.invoice_lines',       'tenant', 'merchant_id', 'invoices_internal.merchants', 120),
    ('invoices_internal.quotes',              'tenant', 'merchant_id', 'invoices_internal.merchants', 130),
    ('invoices_internal.audit_log',           'tenant', 'merchant_id', 'invoices_internal.merchants', 140),
    ('invoices_internal.api_keys',            'tenant', 'merchant_id', 'invoices_internal.merchants', 150),
    ('invoices_internal.idempotency_keys',    'tenant', 'merchant_id', 'invoices_internal.merchants', 160),
    ('invoices_internal.wallets',             'tenant', 'merchant_id', 'invoices_internal.merchants', 170),
    ('invoices_internal.addresses',           'tenant', 'merchant_id', 'invoices_internal.merchants', 180),
    ('invoices_internal.address_assignments', 'tenant', 'merchant_id', 'invoices_internal.merchants', 190),
    ('invoices_internal.events',              'tenant', 'merchant_id', 'invoices_internal.merchants', 200),
    ('invoices_internal.webhook_endpoints',   'tenant', 'merchant_id', 'invoices_internal.merchants', 210),
    ('invoices_internal.webhook_deliveries',  'tenant', 'merchant_id', 'invoices_internal.merchants', 220),
    ('invoices_internal.webhook_attempts',    'tenant', 'merchant_id', 'invoices_internal.merchants', 230),
    ('invoices_internal.payments',            'tenant', 'merchant_id', 'invoices_internal.merchants', 240),
    ('invoices_internal.payment_links',       'tenant', 'merchant_id', 'invoices_internal.merchants', 250),
    ('invoices_internal.emails',              'tenant', 'merchant_id', 'invoices_internal.merchants', 260),
    -- routing: each in a colocation group of its own (colocate_with null = 'none')
    ('invoices_internal.payment_link_slugs',  'routing', 'slug',     null, 310),
    ('invoices_internal.api_key_hashes',      'routing', 'key_hash', null, 320),
    ('invoices_internal.wallet_keys',         'routing', 'first_address', null, 330),
    -- local: written by the coordinator's background worker several times a second, read
    -- only by invoices.worker_status; replicating it to every node would buy nothing
    ('invoices_internal.worker_tasks',        'local', null, null, 900)
  ) as p(table_name, kind, distribution_column, colocate_with, position);

create or replace function invoices.delete_webhook_endpoint(id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('delete_webhook_endpoint');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  e invoices_internal.webhook_endpoints;
begin
  update invoices_internal.webhook_endpoints
     set active = false, deleted_at = now()
   where merchant_id = mid and webhook_endpoints.id = delete_webhook_endpoint.id and deleted_at is null
  returning * into e;
  if not found then   -- deleted before, or not this merchant's
    select * into e from invoices_internal.webhook_endpoints
     where merchant_id = mid and webhook_endpoints.id = delete_webhook_endpoint.id;
  end if;
  if not found then
    perform invoices_internal.raise('P0002', format('webhook endpoint %s not found', delete_webhook_endpoint.id), null,
      'list them with GET /webhook_endpoints');
  end if;
  -- its queued deliveries stop now (one being sent finishes, and is not retried)
  update invoices_internal.webhook_deliveries
     set status = 'dead', last_error = 'not sent: the endpoint was deleted'
   where merchant_id = mid and endpoint_id = e.id and status = 'pending';
  return jsonb_build_object('id', e.id, 'url', e.url, 'active', e.active, 'deleted_at', e.deleted_at);
end
$$;

create or replace function invoices.redeliver(delivery_id bigint) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('redeliver');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  d invoices_internal.webhook_deliveries;
begin
  update invoices_internal.webhook_deliveries
     set status = 'pending', next_attempt_at = now(), lease_until = null,
         max_retries = greatest(max_retries, attempts)
   where merchant_id = mid and id = delivery_id and status <> 'delivering'
     and (endpoint_id is null or exists (select 1 from invoices_internal.webhook_endpoints e
                                          where e.merchant_id = mid and e.id = endpoint_id and e.active))
  returning * into d;
  if not found then
    perform invoices_internal.raise('P0002',
      format('delivery %s not found (or being delivered, or its endpoint was deleted)', delivery_id), null,
      'list deliveries with GET /webhook_deliveries');
  end if;
  return jsonb_build_object('id', d.id, 'status', d.status, 'attempts', d.attempts, 'next_attempt_at', d.next_attempt_at);
end
$$;
comment on function invoices.delete_webhook_endpoint(uuid) is
  'Stop delivering to one of the current merchant''s webhook endpoints: its queued deliveries end at once, dead with last_error "not sent: the endpoint was deleted" (its history stays). Returns {id, url, active, deleted_at}.';


-- A node's URL (its API key may be in the path, query or user info): shown and stored as its origin only.
CREATE  FUNCTION invoices_internal."url_origin"(
	"url" TEXT /* & str */
) RETURNS TEXT /* String */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'url_origin_wrapper';
CREATE  FUNCTION invoices_internal."redact_urls"(
	"text" TEXT /* & str */
) RETURNS TEXT /* String */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'redact_urls_wrapper';
revoke execute on function invoices_internal.url_origin(text), invoices_internal.redact_urls(text) from public;
grant execute on function invoices_internal.url_origin(text), invoices_internal.redact_urls(text) to invoices_api, invoices_admin;
create or replace function invoices_internal.record_chain_error(chain text, error text) returns void
language plpgsql volatile
as $$
begin
  -- a node's URL may carry its API key (path, query, user info): errors keep its origin only
  update invoices_internal.chains c
     set last_error = invoices_internal.redact_urls(replace(record_chain_error.error, c.rpc_url, invoices_internal.url_origin(c.rpc_url))),
         last_error_at = now(), last_poll_at = now()
   where c.id = record_chain_error.chain;
end
$$;

create or replace view invoices.chains as
select c.id, c.family, c.network, invoices_internal.url_origin(c.rpc_url) as rpc_url, c.chain_id,
       c.assets, c.tokens, c.confirmations, c.poll_interval_ms, c.active,
       c.tip_height, c.cursor_height, c.tip_height - c.cursor_height as blocks_behind,
       c.last_poll_at, invoices_internal.redact_urls(c.last_error) as last_error, c.last_error_at
  from invoices_internal.chains c
 where invoices_internal.may_read('chains', current_user);
comment on view invoices.chains is
  'The chains the worker watches: family, network, node URL (scheme, host and port only: never its path, query or credentials, where hosted nodes keep their key), assets, required confirmations, the node''s tip and how far scanning got, the last error. Change them with configure_chain.';


-- Money (issue 19): a mempool payment the node no longer has is reverted; a chain credits only
-- wallets of its network; a payment pays the invoice that held the address when it was first
-- seen; the address pause defaults to invoices.address_pause_minutes.
alter table invoices_internal.chains
  add column mempool_grace_seconds integer not null default 30 check (mempool_grace_seconds between 0 and 86400);
alter table invoices_internal.payments
  add column missing_since timestamptz,
  add column missing_polls integer not null default 0;
drop function invoices.configure_chain(text, text, text, text[], text, integer, bigint, jsonb, bigint, integer, boolean);
create function invoices.configure_chain(
  id               text,
  family           text,
  rpc_url          text,
  assets           text[],
  network          text default 'mainnet',
  confirmations    integer default 1,
  chain_id         bigint default null,
  tokens           jsonb default '{}'::jsonb,
  start_height     bigint default null,
  poll_interval_ms integer default 1000,
  active           boolean default true,
  mempool_grace_seconds integer default 30
) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('configure_chain');  -- first: the caller's scope
  errors jsonb := '[]';
  allowed text[] := case family when 'evm' then array['ETH', 'USDC'] when 'bitcoin' then array['BTC']
                                when 'kaspa' then array['KAS'] end;
  c invoices_internal.chains;
  t record;
begin
  if id is null or id !~ '^[a-z0-9][a-z0-9_-]{0,39}$' then
    errors := errors || '[{"field": "id", "message": "lowercase letters, digits, - and _ (at most 40)"}]';
  end if;
  if allowed is null then
    errors := errors || '[{"field": "family", "message": "must be evm, bitcoin or kaspa"}]';
  elsif assets is null or cardinality(assets) = 0 or not (assets <@ allowed) then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'assets',
      'message', format('a %s chain carries %s', family, array_to_string(allowed, ', '))));
  end if;
  if rpc_url is null or rpc_url !~ '^(https?|wss?)://[^\s/]+' then
    errors := errors || '[{"field": "rpc_url", "message": "must be an http(s) or ws(s) URL"}]';
  end if;
  if network is null or network not in ('mainnet', 'testnet', 'regtest', 'devnet', 'simnet') then
    errors := errors || '[{"field": "network", "message": "must be mainnet, testnet, regtest, devnet or simnet"}]';
  end if;
  if confirmations is null or confirmations not between 0 and 1000 then
    errors := errors || '[{"field": "confirmations", "message": "must be between 0 and 1000"}]';
  end if;
  if poll_interval_ms is null or poll_interval_ms not between 50 and 3600000 then
    errors := errors || '[{"field": "poll_interval_ms", "message": "must be between 50 and 3600000"}]';
  end if;
  if mempool_grace_seconds is null or mempool_grace_seconds not between 0 and 86400 then
    errors := errors || '[{"field": "mempool_grace_seconds", "message": "must be between 0 and 86400"}]';
  end if;
  if jsonb_typeof(tokens) is distinct from 'object' then
    errors := errors || '[{"field": "tokens", "message": "must be an object {\"USDC\": {\"contract\": \"0x…\", \"decimals\": 6}}"}]';
  else
    for t in select key, value from jsonb_each(tokens) loop
      if family <> 'evm' or t.key = 'ETH' or not (t.key = any (assets))
         or coalesce(t.value->>'contract', '') !~ '^0x[0-9a-fA-F]{40}$'
         or coalesce(t.value->>'decimals', '') !~ '^[0-9]{1,2}$' then
        errors := errors || jsonb_build_array(jsonb_build_object('field', 'tokens.' || t.key,
          'message', 'an ERC-20 asset of this chain''s assets with {"contract": "0x<40 hex>", "decimals": 0-99}'));
      end if;
    end loop;
  end if;
  if family = 'evm' and 'USDC' = any (assets) and not (tokens ? 'USDC') then
    errors := errors || '[{"field": "tokens.USDC", "message": "give the token contract: {\"USDC\": {\"contract\": \"0x…\", \"decimals\": 6}}"}]';
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023',
      format('invalid chain: %s', (select string_agg(x->>'field', ', ') from jsonb_array_elements(errors) x)),
      jsonb_build_object('errors', errors)::text,
      'configure_chain(''base'', ''evm'', ''http://127.0.0.1:8545'', ''{ETH,USDC}'', chain_id => 8453, tokens => ''{"USDC": {"contract": "0x…", "decimals": 6}}'')');
  end if;
  insert into invoices_internal.chains as ch (id, family, network, rpc_url, chain_id, assets, tokens,
                                              confirmations, poll_interval_ms, start_height, active,
                                              mempool_grace_seconds)
  values (configure_chain.id, family, network, rpc_url, chain_id, assets, tokens, confirmations,
          poll_interval_ms, start_height, active, mempool_grace_seconds)
  on conflict on constraint chains_pkey do update
     set family = excluded.family, network = excluded.network, rpc_url = excluded.rpc_url,
         chain_id = excluded.chain_id, assets = excluded.assets, tokens = excluded.tokens,
         confirmations = excluded.confirmations, poll_interval_ms = excluded.poll_interval_ms,
         start_height = excluded.start_height, active = excluded.active,
         mempool_grace_seconds = excluded.mempool_grace_seconds,
         -- another node, network or start height: scanning starts again
         cursor_height = case when (ch.rpc_url, ch.network, ch.start_height)
                                   is not distinct from (excluded.rpc_url, excluded.network, excluded.start_height)
                              then ch.cursor_height end,
         cursor_hash = case when (ch.rpc_url, ch.network, ch.start_height)
                                 is not distinct from (excluded.rpc_url, excluded.network, excluded.start_height)
                            then ch.cursor_hash end
  returning * into c;
  return jsonb_build_object('id', c.id, 'family', c.family, 'network', c.network, 'assets', to_jsonb(c.assets),
                            'confirmations', c.confirmations, 'active', c.active,
                            'cursor_height', c.cursor_height);
end
$$;
comment on function invoices.configure_chain(text, text, text, text[], text, integer, bigint, jsonb, bigint, integer, boolean, integer) is
  'Admin: add or change a chain the worker watches (taken into account at its next poll, no restart): family evm / bitcoin / kaspa, the node''s RPC URL, the network its wallets are on (only wallets of that network are credited; the node must be on it: EVM chain_id, Bitcoin/Kaspa network), the assets paid on it, required confirmations (0: a payment counts from the mempool), ERC-20 tokens {"USDC": {"contract", "decimals"}}, where the first poll starts (default: the tip), mempool_grace_seconds (a mempool payment the node no longer has, in 3 polls and at least this long, is reverted; default 30). Returns the chain.';

revoke execute on function invoices.configure_chain(text, text, text, text[], text, integer, bigint, jsonb, bigint, integer, boolean, integer) from public;
grant execute on function invoices.configure_chain(text, text, text, text[], text, integer, bigint, jsonb, bigint, integer, boolean, integer) to invoices_admin;
create or replace function invoices_internal.invoice_before_update() returns trigger
language plpgsql
as $$
declare
  t text[];
begin
  if new.id <> old.id or new.merchant_id <> old.merchant_id or new.invoice_number <> old.invoice_number
     or new.number_seq <> old.number_seq or new.slug <> old.slug or new.created_at <> old.created_at then
    raise exception 'invoice % cannot change its identity (id, merchant, number, slug)', old.invoice_number
      using errcode = '23514';
  end if;
  if old.status <> 'draft' and (new.currency, new.subtotal, new.discount_amount, new.tax_rate,
                                new.tax_amount, new.total)
      is distinct from (old.currency, old.subtotal, old.discount_amount, old.tax_rate,
                        old.tax_amount, old.total) then
    raise exception 'invoice % is %: its amounts are locked', old.invoice_number, old.status
      using errcode = '23514', hint = 'only draft invoices can change their amounts';
  end if;
  new.updated_at := now();
  if new.status is distinct from old.status then
    t := invoices_internal.check_transition(old.status, new.status);
    case t[1]
      when 'finalized_at' then new.finalized_at := now();
      when 'partially_paid_at' then new.partially_paid_at := now();
      when 'paid_at' then new.paid_at := now();
      when 'confirmed_at' then new.confirmed_at := now();
      when 'expired_at' then new.expired_at := now();
      when 'overdue_at' then new.overdue_at := now();
      when 'cancelled_at' then new.cancelled_at := now();
      else null;
    end case;
    -- the audit row and the outbox, in the same transaction (one statement)
    perform invoices_internal.emit_events(new, array[t[2]], null, array[old.status], array[new.status]);
    -- expiry, cancellation and confirmation release the deposit address after its pause (the
    -- invoice's pause_minutes, else invoices.address_pause_minutes: a day), so a late payment
    -- to it still finds its invoice instead of the address's next holder
    -- (the invoice keeps showing deposit_address; address_id goes, so an invoice revived by
    -- a late payment or a reorg never claims an address the carousel has handed on)
    if new.status in ('expired', 'cancelled', 'confirmed') and old.address_id is not null then
      perform invoices_internal.release_address(new.merchant_id, new.id, old.address_id,
        coalesce(new.pause_minutes, current_setting('invoices.address_pause_minutes')::int));
      new.address_id := null;
    end if;
  end if;
  perform invoices_internal.check_invoice_row(new);
  return new;
end
$$;

create or replace function invoices_internal.watched_addresses(chain text) returns setof text
language plpgsql stable
as $$
begin
  return query
  with c as (select * from invoices_internal.chains x where x.id = watched_addresses.chain),
  w as (
    select w.merchant_id, w.id
      from invoices_internal.wallets w, c
     -- a chain credits only wallets of its own network (a testnet never pays a mainnet invoice)
     where w.asset = any (c.assets) and w.network = c.network
  )
  select a.address
    from invoices_internal.addresses a join w on a.merchant_id = w.merchant_id and a.wallet_id = w.id
   where a.invoice_id is not null
  union
  select a.address
    from invoices_internal.addresses a join w on a.merchant_id = w.merchant_id and a.wallet_id = w.id
   where a.invoice_id is null and a.available_at > now()
  union
  select p.address from invoices_internal.payments p
   where p.chain = watched_addresses.chain and p.status in ('mempool', 'in_block');
end
$$;

-- Money that matched no open invoice is visible (issue 19).
insert into invoices_internal.access_rules (kind, object, scope) values ('view', 'unmatched_payments', 'read');
create view invoices.unmatched_payments with (security_barrier) as
select u.merchant_id, u.id, u.chain, u.txid, u.output_index, u.address, u.asset, u.amount, u.status,
       u.invoice_id, u.invoice_number, u.reason, u.detected_at
  from (select p.merchant_id, p.id, p.chain, p.txid, p.output_index, p.address, p.asset, p.amount, p.status,
               p.invoice_id, i.invoice_number, p.detected_at,
               case when i.id is null then 'no_invoice'
                    when i.asset is distinct from p.asset then 'other_asset'
                    when i.cancelled_at <= p.detected_at then 'invoice_cancelled'
                    when p.late then 'invoice_expired'
                    when (select coalesce(sum(e.amount), 0) from invoices_internal.payments e
                           where e.merchant_id = p.merchant_id and e.invoice_id = p.invoice_id and e.asset = p.asset
                             and e.status <> 'reverted' and e.id < p.id)
                         >= (select q.asset_amount from invoices_internal.quotes q
                              where q.merchant_id = p.merchant_id and q.invoice_id = p.invoice_id
                              order by q.created_at desc limit 1) then 'invoice_already_paid'
               end as reason
          from invoices_internal.payments p
          left join invoices_internal.invoices i on i.merchant_id = p.merchant_id and i.id = p.invoice_id
         where p.status <> 'reverted'
           and p.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[])
           and invoices_internal.may_read('unmatched_payments', current_user)) u
 where u.reason is not null;
comment on view invoices.unmatched_payments is
  'Payments that arrived but matched no open invoice, so none is lost: reason invoice_cancelled or invoice_expired (first seen after the invoice was cancelled or had expired: refund or apply them), invoice_already_paid (its invoice was paid in full before it), other_asset (not the asset its invoice asked for), no_invoice (an address no invoice held). Reverted payments are left out.';

grant select on invoices.unmatched_payments to invoices_admin, invoices_api;

create function invoices_internal.revert_payment(p invoices_internal.payments, tip bigint, at timestamptz)
returns uuid
language plpgsql volatile
as $$
declare
  pay invoices_internal.payments;
  inv invoices_internal.invoices;
begin
  update invoices_internal.payments set status = 'reverted', reverted_at = at, confirmed_at = null, updated_at = at
   where merchant_id = p.merchant_id and id = p.id
  returning * into pay;
  select * into inv from invoices_internal.invoices where merchant_id = pay.merchant_id and id = pay.invoice_id;
  if inv.id is not null then
    perform invoices_internal.emit_events(inv, '{payment.reverted}', invoices_internal.payment_object(pay, tip));
  end if;
  return inv.id;
end
$$;
revoke execute on function invoices_internal.revert_payment(invoices_internal.payments, bigint, timestamptz) from public;
create or replace function invoices_internal.claim_deliveries(n integer, lease_seconds integer)
returns table (merchant_id uuid, id bigint, url text, secret text, event text, event_id uuid, body text, attempt integer)
language plpgsql volatile
as $$
declare
  lease timestamptz := now() + make_interval(secs => lease_seconds);
  g record;
  k record;
  locked bigint[];
  ended bigint[];
  inactive uuid[];
begin
  -- the n most overdue deliveries are read without locks; each merchant's are then locked with
  -- SKIP LOCKED (another worker may hold some) and leased in statements naming that merchant
  for g in select d.merchant_id as mid, array_agg(d.id) as ids
             from (select x.merchant_id, x.id from invoices_internal.webhook_deliveries x
                    where (x.status = 'pending' and x.next_attempt_at <= now())
                       or (x.status = 'delivering' and x.lease_until < now())
                    order by x.next_attempt_at
                    limit n) d
            group by d.merchant_id
  loop
    locked := '{}';
    ended := '{}';
    -- a deleted or deactivated endpoint gets nothing more: its queued deliveries end here
    inactive := array(select e.id from invoices_internal.webhook_endpoints e where e.merchant_id = g.mid and not e.active);
    -- locked by key (the due index would scan every due row), then checked again: a row that
    -- changed since the read above is locked in its latest version
    for k in select x.id, x.status, x.next_attempt_at, x.lease_until, x.endpoint_id from invoices_internal.webhook_deliveries x
              where x.merchant_id = g.mid and x.id = any (g.ids)
              order by x.id
              for update skip locked
    loop
      if (k.status = 'pending' and k.next_attempt_at <= now()) or (k.status = 'delivering' and k.lease_until < now()) then
        if k.endpoint_id = any (inactive) then
          ended := ended || k.id;
        else
          locked := locked || k.id;
        end if;
      end if;
    end loop;
    if cardinality(ended) > 0 then
      update invoices_internal.webhook_deliveries d
         set status = 'dead', lease_until = null, last_error = 'not sent: the endpoint was deleted or deactivated'
       where d.merchant_id = g.mid and d.id = any (ended);
    end if;
    return query
    with claimed as (
      update invoices_internal.webhook_deliveries d
         set status = 'delivering', lease_until = lease
       where d.merchant_id = g.mid and d.id = any (locked)
      returning d.*
    )
    select c.merchant_id, c.id, c.url,
           coalesce(c.secret, (select e.secret from invoices_internal.webhook_endpoints e
                                where e.merchant_id = g.mid and e.id = c.endpoint_id)),
           v.event, v.id,
           jsonb_build_object('id', v.id, 'event', v.event,
                              'timestamp', to_char(v.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                              'data', v.data)::text,
           c.attempts + 1
      from claimed c
      join invoices_internal.events v on v.merchant_id = g.mid and v.id = c.event_id;
  end loop;
end
$$;

create or replace function invoices_internal.check_scope(need text, scopes text[], what text) returns void
language plpgsql stable
as $$
begin
  if invoices_internal.scope_allows(need, scopes) then
    return;
  end if;
  if need = 'sql' then
    perform invoices_internal.raise('42501', format('%s is not available over HTTP', what), null,
      'operators call it in SQL, as a member of invoices_admin');
  elsif scopes = '{anonymous}' then
    perform invoices_internal.raise('28000', 'an API key is required', null,
      'send it as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;
  need := replace(need, 'public_', '');
  perform invoices_internal.raise('42501', format('this API key lacks the %s scope', need), null,
    format('create a key with scopes => ''{%s}'' (this one has %s)', need, array_to_string(scopes, ', ')));
end
$$;

create or replace function invoices_internal.authorize(object text) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  scopes text[] := invoices_internal.http_scopes();
  need text;
begin
  if scopes is null or coalesce(current_setting('invoices.authorized_call', true), '') <> '' then
    return true;
  end if;
  need := invoices_internal.needed_scope('function', object);
  if not invoices_internal.scope_allows(need, scopes) then
    perform invoices_internal.check_scope(need, scopes, format('invoices.%s()', object));
  end if;
  perform set_config('invoices.authorized_call', object, true);
  return true;
end
$$;

create or replace function invoices_internal.http_pre_request() returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  headers json := coalesce(nullif(current_setting('request.headers', true), ''), '{}')::json;
  need text := invoices_internal.required_scope(coalesce(current_setting('request.method', true), 'GET'),
                                                coalesce(current_setting('request.path', true), '/'));
  presented text := nullif(btrim(headers->>'x-api-key'), '');
  client text;
  owner record;
  k record;
begin
  if presented is null and headers->>'authorization' ~* '^bearer\s' then
    presented := nullif(btrim(substr(headers->>'authorization', 8)), '');
  end if;
  if presented is null then
    -- Anonymous: counted per client address. The web front sets X-Real-IP to the peer's
    -- address; PostgREST itself listens on loopback only, and calls made to it directly share
    -- the bucket "local".
    client := coalesce(nullif(btrim(split_part(headers->>'x-real-ip', ',', 1)), ''), 'local');
    perform invoices_internal.count_request(md5('anonymous ' || client)::uuid,
      current_setting('invoices.anonymous_rate_limit_per_minute')::int, 'this client address');
    perform set_config('invoices.api_key_scopes', 'anonymous', true);
    if need in ('anonymous', 'public_read') then
      return;
    end if;
    perform invoices_internal.raise('28000', 'an API key is required', null,
      'send it as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;

  select h.merchant_id, h.key_id into owner
    from invoices_internal.api_key_hashes h
   where h.key_hash = encode(sha256(convert_to(presented, 'UTF8')), 'hex');
  select id, merchant_id, scopes, rate_limit_per_minute, revoked_at into k
    from invoices_internal.api_keys
   where merchant_id = owner.merchant_id and id = owner.key_id;
  if not found or k.revoked_at is not null then
    perform invoices_internal.raise('28000',
      case when found then 'this API key was revoked' else 'invalid API key' end, null,
      'send an active key as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;
  perform invoices_internal.count_request(k.id,
    coalesce(k.rate_limit_per_minute, current_setting('invoices.rate_limit_per_minute')::int), 'this API key');

  if need = 'method_not_allowed' then
    perform invoices_internal.raise('0A000',
      format('%s %s is not allowed: the views are read-only', current_setting('request.method', true),
             current_setting('request.path', true)), null,
      'change data through the functions under /rpc/ (create_invoice, cancel_invoice, ...)');
  end if;
  -- the functions and views check the scope themselves; this is the second line
  if not invoices_internal.scope_allows(need, k.scopes) then
    perform invoices_internal.check_scope(need, k.scopes, current_setting('request.path', true));
  end if;

  perform set_config('invoices.merchant_id', k.merchant_id::text, true),
          set_config('invoices.api_key_id', k.id::text, true),
          set_config('invoices.api_key_scopes', array_to_string(k.scopes, ','), true),
          set_config('invoices.idempotency_key', coalesce(headers->>'idempotency-key', ''), true);
end
$$;

create or replace function invoices_internal.needed_scope(kind text, object text) returns text
language plpgsql stable
as $$
declare
  need text;
begin
  select a.scope into need from invoices_internal.access_rules a
   where a.kind = needed_scope.kind and a.object = needed_scope.object;
  return coalesce(need, case kind when 'function' then 'write' else 'read' end);
end
$$;

create function invoices_internal.scope_allows(need text, scopes text[]) returns boolean
language sql immutable
return need = 'anonymous'
    or (need = 'public_read' and (scopes = '{anonymous}' or scopes && '{read,admin}'))
    or (need not in ('sql', 'public_read') and scopes && array[need, 'admin']);
revoke execute on function invoices_internal.scope_allows(text, text[]) from public;

create or replace function invoices_internal.may_read(object text, caller name) returns boolean
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  scopes text[] := invoices_internal.http_scopes();
  need text;
begin
  if scopes is null or caller = current_user then
    return true;
  end if;
  need := invoices_internal.needed_scope('view', object);
  if not invoices_internal.scope_allows(need, scopes) then
    perform invoices_internal.check_scope(need, scopes, format('invoices.%s', object));
  end if;
  return true;
end
$$;

-- Structure (issue 20): how payments settle an invoice is decided in Rust (domain::settlement);
-- settle_invoice and record_chain_poll lock, read, call and write.
CREATE  FUNCTION invoices_internal."settlement"(
	"status" TEXT, /* & str */
	"asset" TEXT, /* Option < & str > */
	"currency" TEXT, /* & str */
	"total" NUMERIC, /* AnyNumeric */
	"exponent" INT, /* i32 */
	"due" NUMERIC, /* Option < AnyNumeric > */
	"tolerance_percent" NUMERIC, /* Option < AnyNumeric > */
	"payments" jsonb /* Option < JsonB > */
) RETURNS jsonb /* Option < JsonB > */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'settlement_wrapper';
revoke execute on function invoices_internal.settlement(text, text, text, numeric, integer, numeric, numeric, jsonb) from public;
CREATE  FUNCTION invoices_internal."payment_is_late"(
	"status" TEXT, /* & str */
	"expires_at" timestamp with time zone /* Option < TimestampWithTimeZone > */
) RETURNS bool /* bool */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'payment_is_late_wrapper';
revoke execute on function invoices_internal.payment_is_late(text, timestamp with time zone) from public;
CREATE  FUNCTION invoices_internal."payment_holder"(
	"held_by" uuid[], /* :: std :: option :: Option < Vec < Option < Uuid > > > */
	"held_from" timestamp with time zone[], /* :: std :: option :: Option < Vec < Option < TimestampWithTimeZone > > > */
	"block_time" bigint, /* Option < i64 > */
	"in_block" bool, /* bool */
	"live" uuid, /* Option < Uuid > */
	"last" uuid /* Option < Uuid > */
) RETURNS uuid /* Option < Uuid > */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'payment_holder_wrapper';
revoke execute on function invoices_internal.payment_holder(uuid[], timestamp with time zone[], bigint, boolean, uuid, uuid) from public;

create or replace function invoices_internal.settle_invoice(mid uuid, inv_id uuid) returns void
language plpgsql volatile
as $$
declare
  i invoices_internal.invoices;
  decision jsonb;
  step text;
begin
  -- lock
  select * into i from invoices_internal.invoices where merchant_id = mid and id = inv_id for update;
  if not found then
    return;
  end if;
  -- read and decide
  decision := invoices_internal.settlement(
    i.status, i.asset, i.currency, i.total, i.exponent,
    (select q.asset_amount from invoices_internal.quotes q
      where q.merchant_id = mid and q.invoice_id = inv_id order by q.created_at desc limit 1),
    (select m.payment_tolerance_percent from invoices_internal.merchants m where m.id = mid),
    (select jsonb_agg(jsonb_build_object('asset', p.asset, 'amount', p.amount::text, 'status', p.status,
                                         'late', p.late))
       from invoices_internal.payments p where p.merchant_id = mid and p.invoice_id = inv_id));
  if decision is null then
    return;   -- a draft, or a cancelled invoice (its money stays in payments, to refund)
  end if;
  -- write: the amounts first (no status change), so the status events carry them
  update invoices_internal.invoices
     set asset_paid = (decision->>'asset_paid')::numeric, amount_paid = (decision->>'amount_paid')::numeric,
         overpaid = (decision->>'overpaid')::boolean, paid_late = (decision->>'paid_late')::boolean
   where merchant_id = mid and id = inv_id
     and (asset_paid, amount_paid, overpaid, paid_late) is distinct from
         ((decision->>'asset_paid')::numeric, (decision->>'amount_paid')::numeric,
          (decision->>'overpaid')::boolean, (decision->>'paid_late')::boolean);
  for step in select jsonb_array_elements_text(decision->'steps') loop
    update invoices_internal.invoices set status = step where merchant_id = mid and id = inv_id;
  end loop;
end
$$;

-- The worker as a list of tasks: failures are recorded by kind, and a recovery phase runs once
-- before the first task.
alter table invoices_internal.worker_tasks add column last_error_kind text;
drop function invoices_internal.worker_task_report(text, bigint, bigint, integer, bigint, text, jsonb, bigint);
create or replace function invoices_internal.worker_task_report(task text, runs bigint, failures bigint,
                                                     consecutive_failures integer,
                                                     last_success_unix_ms bigint, last_error text,
                                                     last_error_kind text,
                                                     last_result jsonb, next_run_in_ms bigint)
returns void
language sql volatile
as $$
  insert into invoices_internal.worker_tasks as t
    (task, runs, failures, consecutive_failures, last_run_at, last_success_at, last_error, last_error_kind,
     last_error_at, last_result, next_run_at)
  values (task, runs, failures, consecutive_failures, now(), to_timestamp(last_success_unix_ms / 1000.0), last_error,
          last_error_kind, case when last_error is not null then now() end, last_result,
          now() + next_run_in_ms * interval '1 millisecond')
  on conflict on constraint worker_tasks_pkey do update set
    runs = t.runs + excluded.runs,
    failures = t.failures + excluded.failures,
    consecutive_failures = excluded.consecutive_failures,
    last_run_at = excluded.last_run_at,
    last_success_at = coalesce(excluded.last_success_at, t.last_success_at),
    last_error = coalesce(excluded.last_error, t.last_error),
    last_error_kind = case when excluded.last_error is not null then excluded.last_error_kind else t.last_error_kind end,
    last_error_at = coalesce(excluded.last_error_at, t.last_error_at),
    last_result = excluded.last_result,
    next_run_at = excluded.next_run_at
$$;

create or replace view invoices.worker_status as
select t.task, w.pid as worker_pid, w.backend_start as worker_started_at,
       t.runs, t.failures, t.consecutive_failures, t.last_run_at, t.last_success_at,
       t.last_error, t.last_error_at, t.last_result, t.next_run_at, t.last_error_kind
  from invoices_internal.worker_tasks t
  left join lateral (select a.pid, a.backend_start from pg_catalog.pg_stat_activity a
                      where a.backend_type = 'invoices worker' limit 1) w on true
 where invoices_internal.may_read('worker_status', current_user);

create or replace function invoices_internal.worker_recovery() returns jsonb
language plpgsql volatile
as $$
declare
  deliveries integer := invoices_internal.release_delivery_leases();
  emails integer;
begin
  update invoices_internal.emails set lease_until = now()
   where status = 'sending' and lease_until > now();
  get diagnostics emails = row_count;
  return jsonb_build_object('deliveries_released', deliveries, 'emails_released', emails);
end
$$;
comment on view invoices.worker_status is
  'The background worker''s tasks (expiry, rates, …): runs, failures, consecutive failures (the back-off), last run, last success, last error (and its kind: spi, json, rpc, config, thread) and result, next run, and the worker''s pid. A failing task is retried with back-off and never stops the others; the task recovery is what the worker found half done when it started.';
revoke execute on function invoices_internal.worker_task_report(text, bigint, bigint, integer, bigint, text, text, jsonb, bigint) from public;
revoke execute on function invoices_internal.worker_recovery() from public;

create or replace function invoices_internal.record_chain_poll(chain text, result jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  c invoices_internal.chains;
  tip bigint := (result->'tip'->>'height')::bigint;
  fork bigint := (result->>'fork_height')::bigint;
  mempool_known boolean := jsonb_typeof(result->'mempool') = 'array';
  last_block jsonb := result->'blocks'->-1;
  t record;
  pay invoices_internal.payments;
  a record;
  inv invoices_internal.invoices;
  required integer;
  confs integer;
  new_status text;
  orphaned bigint[] := '{}';
  touched bigint[] := '{}';
  invoices_touched uuid[] := '{}';
  is_late boolean;
  confirmed_time timestamptz;
  k record;
  r record;
  fork_hash text;
  watch_at timestamptz;
  received integer := 0;
  confirmed integer := 0;
  reverted integer := 0;
  in_mempool text[] := array(select m->>'txid' || ':' || (m->>'index')
                               from jsonb_array_elements(coalesce(result->'mempool', '[]')) m);
  whole_chain boolean;
  polled_at timestamptz := now();
begin
  select * into c from invoices_internal.chains where id = chain for update;
  if not found then
    return jsonb_build_object('skipped', 'chain removed');
  end if;
  -- 1. a reorg: blocks above the fork are gone; their payments wait to be seen again
  if fork is not null then
    delete from invoices_internal.chain_blocks b where b.chain = c.id and b.height > fork;
    for r in update invoices_internal.payments o
                set block_height = null, block_hash = null, status = 'mempool', updated_at = now()
              where o.chain = c.id and o.block_height > fork and o.status <> 'reverted'
              returning o.id
    loop
      orphaned := orphaned || r.id;
    end loop;
  end if;
  insert into invoices_internal.chain_blocks (chain, height, hash)
  select c.id, (b->>'height')::bigint, b->>'hash' from jsonb_array_elements(result->'blocks') b
  on conflict on constraint chain_blocks_pkey do update set hash = excluded.hash;
  delete from invoices_internal.chain_blocks b where b.chain = c.id and b.height < tip - 100;

  -- 2. transfers: in blocks first, then the mempool (a transaction in both is in its block)
  for t in
    select x.*, 0 as pass from jsonb_to_recordset(result->'transfers')
      as x(txid text, index bigint, address text, asset text, amount_base numeric, amount numeric, block jsonb,
           block_time bigint)
    union all
    select x.*, 1 from jsonb_to_recordset(coalesce(result->'mempool', '[]'))
      as x(txid text, index bigint, address text, asset text, amount_base numeric, amount numeric, block jsonb,
           block_time bigint)
    order by pass
  loop
    select * into pay from invoices_internal.payments q
     where q.chain = c.id and q.txid = t.txid and q.output_index = t.index
     limit 1;
    if found then
      if t.block is not null and (pay.block_hash is distinct from t.block->>'hash' or pay.status = 'reverted') then
        update invoices_internal.payments
           set block_height = (t.block->>'height')::bigint, block_hash = t.block->>'hash',
               status = case when status = 'reverted' then 'in_block' else status end,
               reverted_at = null, missing_polls = 0, missing_since = null, updated_at = now()
         where merchant_id = pay.merchant_id and id = pay.id;
        touched := touched || pay.id;
      elsif t.block is null and pay.status = 'reverted' then
        -- back in the mempool (e.g. re-broadcast after a reorg)
        update invoices_internal.payments
           set status = 'mempool', reverted_at = null, missing_polls = 0, missing_since = null, updated_at = now()
         where merchant_id = pay.merchant_id and id = pay.id;
        touched := touched || pay.id;
      end if;
      continue;
    end if;
    -- a new payment: to the address of which wallet of this chain's network (the asset tells
    -- ETH from USDC)? Which invoice it pays is domain::settlement::holder_when_seen: the one
    -- that held the address when the payment was first seen, so a late payment for an earlier
    -- holder never pays the next one.
    select ad.merchant_id, ad.id,
           (select invoices_internal.payment_holder(array_agg(x.invoice_id), array_agg(x.assigned_at),
                                                    t.block_time, t.block is not null,
                                                    ad.invoice_id, ad.last_invoice_id)
              from invoices_internal.address_assignments x
             where x.merchant_id = ad.merchant_id and x.address_id = ad.id) as invoice_id into a
      from invoices_internal.addresses ad
      join invoices_internal.wallets w on w.merchant_id = ad.merchant_id and w.id = ad.wallet_id
     where ad.address = t.address and w.asset = t.asset and w.network = c.network
     order by ad.invoice_id is null, ad.available_at desc, ad.id
     limit 1;
    if not found then
      continue;   -- watched a moment ago, since removed
    end if;
    -- locks in the order every other path takes them: the invoice, then its address
    select * into inv from invoices_internal.invoices where merchant_id = a.merchant_id and id = a.invoice_id
       for update;
    is_late := inv.id is not null and invoices_internal.payment_is_late(inv.status, inv.expires_at);
    insert into invoices_internal.payments (merchant_id, chain, txid, output_index, address, address_id, invoice_id,
                                            asset, amount_base, amount, block_height, block_hash, status, late)
    values (a.merchant_id, c.id, t.txid, t.index, t.address, a.id, a.invoice_id, t.asset, t.amount_base, t.amount,
            (t.block->>'height')::bigint, t.block->>'hash', case when t.block is null then 'mempool' else 'in_block' end,
            is_late)
    returning * into pay;
    update invoices_internal.addresses set first_paid_at = now()
     where merchant_id = a.merchant_id and id = a.id and first_paid_at is null;
    received := received + 1;
    if inv.id is not null then
      perform invoices_internal.emit_events(inv, '{payment.received}', invoices_internal.payment_object(pay, tip));
    end if;
    touched := touched || pay.id;
  end loop;

  -- 3. orphaned payments not seen again: back in the mempool if it still has them, else reverted
  for pay in
    select * from invoices_internal.payments q
     where q.id = any (orphaned) and q.block_height is null
       and not exists (select 1 from jsonb_array_elements(coalesce(result->'mempool', '[]')) m
                        where m->>'txid' = q.txid and (m->>'index')::bigint = q.output_index)
  loop
    invoices_touched := invoices_touched || invoices_internal.revert_payment(pay, tip, polled_at);
    reverted := reverted + 1;
  end loop;
  touched := touched || orphaned;

  -- 3b. mempool payments the node no longer has (dropped, replaced by fee or nonce, double-
  -- spent): gone once missing from 3 polls that saw the chain up to its tip and for
  -- mempool_grace_seconds; then reverted, and their invoice goes back to pending or partial.
  -- A node that is behind, or one without a mempool API, counts nothing.
  whole_chain := mempool_known and not coalesce((result->>'behind')::boolean, false)
                 and coalesce((last_block->>'height')::bigint, c.cursor_height, -1) >= tip;
  if whole_chain then
    for pay in
      select * from invoices_internal.payments q
       where q.chain = c.id and q.status = 'mempool' and q.block_height is null
    loop
      if pay.txid || ':' || pay.output_index = any (in_mempool) then
        if pay.missing_polls > 0 then
          update invoices_internal.payments set missing_polls = 0, missing_since = null
           where merchant_id = pay.merchant_id and id = pay.id;
        end if;
        continue;
      end if;
      update invoices_internal.payments
         set missing_polls = missing_polls + 1, missing_since = coalesce(missing_since, polled_at)
       where merchant_id = pay.merchant_id and id = pay.id
      returning * into pay;
      if pay.missing_polls >= 3 and pay.missing_since <= polled_at - make_interval(secs => c.mempool_grace_seconds) then
        invoices_touched := invoices_touched || invoices_internal.revert_payment(pay, tip, polled_at);
        reverted := reverted + 1;
      end if;
    end loop;
  end if;

  -- 4. confirmations: every payment not yet confirmed, and those touched by this poll
  for pay in
    select * from invoices_internal.payments q
     where q.chain = c.id and (q.status in ('mempool', 'in_block') or q.id = any (touched))
       and q.status <> 'reverted'
  loop
    select coalesce(i.confirmations, c.confirmations) into required
      from invoices_internal.invoices i where i.merchant_id = pay.merchant_id and i.id = pay.invoice_id;
    required := coalesce(required, c.confirmations);
    confs := case when pay.block_height is null then 0 else greatest(tip - pay.block_height + 1, 0) end;
    new_status := case when confs >= required then 'confirmed'
                       when pay.block_height is not null then 'in_block' else 'mempool' end;
    if new_status <> pay.status then
      confirmed_time := case when new_status = 'confirmed' then now() end;
      update invoices_internal.payments
         set status = new_status, updated_at = now(), confirmed_at = confirmed_time
       where merchant_id = pay.merchant_id and id = pay.id
      returning * into pay;
      invoices_touched := invoices_touched || pay.invoice_id;
      if new_status = 'confirmed' then
        confirmed := confirmed + 1;
        select * into inv from invoices_internal.invoices where merchant_id = pay.merchant_id and id = pay.invoice_id;
        if inv.id is not null then
          perform invoices_internal.emit_events(inv, '{payment.confirmed}', invoices_internal.payment_object(pay, tip));
        end if;
      end if;
    elsif pay.id = any (touched) then
      invoices_touched := invoices_touched || pay.invoice_id;
    end if;
  end loop;

  -- 5. the invoices follow their payments (locked in one order: no deadlocks with the sweeps)
  for k in select i.merchant_id, i.id from invoices_internal.invoices i
            where i.id = any (invoices_touched)
            order by i.merchant_id, i.id
  loop
    perform invoices_internal.settle_invoice(k.merchant_id, k.id);
  end loop;

  -- the chain's row: every value computed first (no subquery or function inside its CASEs)
  if fork is not null then
    fork_hash := (select b.hash from invoices_internal.chain_blocks b where b.chain = c.id and b.height = fork);
  end if;
  -- a lagging node's poll scanned nothing: the addresses handed out before it still need the
  -- rescan it did not do, so its watch time is not kept
  watch_at := case when coalesce((result->>'behind')::boolean, false) then null
                   else (result->>'watch_at')::timestamptz end;

  update invoices_internal.chains
     set tip_height = tip, tip_hash = result->'tip'->>'hash', last_poll_at = now(), last_error = null,
         last_watch_at = coalesce(watch_at, last_watch_at),
         last_scan_from = case when fork is not null then fork + 1
                               when (last_block->>'height')::bigint > coalesce(cursor_height, -1)
                               then coalesce(cursor_height + 1, (result->'blocks'->0->>'height')::bigint)
                               else last_scan_from end,
         cursor_height = coalesce((last_block->>'height')::bigint, case when fork is not null then fork else cursor_height end),
         cursor_hash = coalesce(last_block->>'hash', case when fork is not null then fork_hash else cursor_hash end)
   where id = c.id;
  return jsonb_build_object('tip', tip, 'blocks', jsonb_array_length(result->'blocks'), 'received', received,
                            'confirmed', confirmed, 'reverted', reverted, 'reorg', fork is not null);
end
$$;

create or replace view invoices.unmatched_payments with (security_barrier) as
select u.merchant_id, u.id, u.chain, u.txid, u.output_index, u.address, u.asset, u.amount, u.status,
       u.invoice_id, u.invoice_number, u.reason, u.detected_at
  from (select p.merchant_id, p.id, p.chain, p.txid, p.output_index, p.address, p.asset, p.amount, p.status,
               p.invoice_id, i.invoice_number, p.detected_at,
               case when i.id is null then 'no_invoice'
                    when i.asset is distinct from p.asset then 'other_asset'
                    -- late: the invoice was cancelled when the payment was recorded (its
                    -- detected_at may precede a cancel that committed during the poll)
                    when i.cancelled_at <= p.detected_at or i.cancelled_at is not null and p.late then 'invoice_cancelled'
                    -- a late payment to an expired invoice pays it (paid_late): unmatched only
                    -- while the invoice stays expired
                    when p.late and i.status = 'expired' then 'invoice_expired'
                    when (select coalesce(sum(e.amount), 0) from invoices_internal.payments e
                           where e.merchant_id = p.merchant_id and e.invoice_id = p.invoice_id and e.asset = p.asset
                             and e.status <> 'reverted' and e.id < p.id)
                         >= (select q.asset_amount from invoices_internal.quotes q
                              where q.merchant_id = p.merchant_id and q.invoice_id = p.invoice_id
                              order by q.created_at desc limit 1) then 'invoice_already_paid'
               end as reason
          from invoices_internal.payments p
          left join invoices_internal.invoices i on i.merchant_id = p.merchant_id and i.id = p.invoice_id
         where p.status <> 'reverted'
           and p.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[])
           and invoices_internal.may_read('unmatched_payments', current_user)) u
 where u.reason is not null;

-- The seed APIs (issue 21): Living Invoices and BTPay at /api/v1, through invoices.seed_request.
insert into invoices_internal.access_rules (kind, object, scope) values ('function', 'seed_request', 'anonymous');
CREATE  FUNCTION invoices_internal."seed_route"(
	"method" TEXT, /* & str */
	"path" TEXT /* & str */
) RETURNS jsonb /* JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_route_wrapper';
revoke execute on function invoices_internal.seed_route(text, text) from public;
CREATE  FUNCTION invoices_internal."seed_query"(
	"query" TEXT /* & str */
) RETURNS jsonb /* JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_query_wrapper';
revoke execute on function invoices_internal.seed_query(text) from public;
CREATE  FUNCTION invoices_internal."seed_error_status"(
	"seed" TEXT, /* & str */
	"engine_status" INT /* i32 */
) RETURNS INT /* i32 */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_error_status_wrapper';
revoke execute on function invoices_internal.seed_error_status(text, integer) from public;
CREATE  FUNCTION invoices_internal."seed_error_body"(
	"message" TEXT, /* & str */
	"code" TEXT, /* Option < & str > */
	"detail" TEXT /* Option < & str > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_error_body_wrapper';
revoke execute on function invoices_internal.seed_error_body(text, text, text) from public;
CREATE  FUNCTION invoices_internal."seed_v1_create_args"(
	"body" jsonb, /* Option < JsonB > */
	"default_due_date" TEXT /* & str */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_v1_create_args_wrapper';
revoke execute on function invoices_internal.seed_v1_create_args(jsonb, text) from public;
CREATE  FUNCTION invoices_internal."seed_v1_list_params"(
	"query" jsonb /* JsonB */
) RETURNS jsonb /* JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_v1_list_params_wrapper';
revoke execute on function invoices_internal.seed_v1_list_params(jsonb) from public;
CREATE  FUNCTION invoices_internal."seed_v1_include_payments"(
	"query" jsonb /* JsonB */
) RETURNS bool /* bool */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_v1_include_payments_wrapper';
revoke execute on function invoices_internal.seed_v1_include_payments(jsonb) from public;
CREATE  FUNCTION invoices_internal."seed_v1_invoice"(
	"invoice" jsonb /* JsonB */
) RETURNS jsonb /* JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_v1_invoice_wrapper';
revoke execute on function invoices_internal.seed_v1_invoice(jsonb) from public;
CREATE  FUNCTION invoices_internal."seed_v1_status"(
	"invoice" jsonb /* JsonB */
) RETURNS jsonb /* JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_v1_status_wrapper';
revoke execute on function invoices_internal.seed_v1_status(jsonb) from public;
create or replace function invoices_internal.seed_answer(status integer, body jsonb, headers jsonb default null)
returns jsonb
language plpgsql volatile
as $$
declare
  current jsonb := coalesce(nullif(current_setting('response.headers', true), '')::jsonb, '[]');
begin
  perform set_config('response.status', status::text, true);
  if headers is not null then
    perform set_config('response.headers',
      (current || (select coalesce(jsonb_agg(jsonb_build_object(h.key, h.value)), '[]') from jsonb_each_text(headers) h))::text,
      true);
  end if;
  return body;
end
$$;

create or replace function invoices_internal.seed_invoice(ref text) returns jsonb
language plpgsql stable
as $$
declare
  mid uuid := invoices_internal.require_merchant();
  inv_id uuid := invoices_internal.resolve_invoice(mid, ref);
begin
  return (select to_jsonb(r) || jsonb_build_object('created_unix', extract(epoch from r.created_at)::bigint)
            from invoices.invoices r where r.merchant_id = mid and r.id = inv_id);
end
$$;

create or replace function invoices.seed_request(text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('seed_request');  -- first: each route checks its scope
  headers json := coalesce(nullif(current_setting('request.headers', true), ''), '{}')::json;
  method text := coalesce(nullif(headers->>'x-seed-method', ''), 'GET');
  path text := coalesce(nullif(headers->>'x-seed-path', ''), '/');
  refusal jsonb := nullif(current_setting('invoices.gateway_refusal', true), '')::jsonb;
  r jsonb;
  body jsonb;
  result jsonb;
  scopes text[] := invoices_internal.http_scopes();
  code text;
  message text;
  detail text;
  problem jsonb;
begin
  -- the gateway refused the request (no key, a bad key, the rate limit): in the seed's shape
  if refusal is not null then
    return invoices_internal.seed_answer((refusal->>'status')::int,
      invoices_internal.seed_error_body(refusal->>'message', refusal->>'code', null), refusal->'headers');
  end if;
  r := invoices_internal.seed_route(method, path);
  if r ? 'status' then
    return invoices_internal.seed_answer((r->>'status')::int, jsonb_build_object('error', r->>'error'),
      case when r ? 'allow' then jsonb_build_object('Allow', r->>'allow') end);
  end if;
  begin
    body := case when nullif(btrim($1), '') is not null then $1::jsonb end;
  exception when others then
    return invoices_internal.seed_answer(400, jsonb_build_object('error', 'the request body is not valid JSON'));
  end;
  begin
    if not invoices_internal.scope_allows(r->>'scope', scopes) then
      perform invoices_internal.check_scope(r->>'scope', scopes, path);
    end if;
    execute format('select invoices_internal.%I($1, $2, $3)', 'seed_' || (r->>'handler'))
       into result
      using r->'params', invoices_internal.seed_query(coalesce(headers->>'x-seed-query', '')), body;
  exception when others then
    -- the handler's writes are rolled back; the error is answered in the seed's shape
    get stacked diagnostics code = returned_sqlstate, message = message_text, detail = pg_exception_detail;
    if code = 'PGRST' then   -- raised during a request by invoices_internal.raise
      problem := message::jsonb;
      code := problem->>'code';
      message := problem->>'message';
      detail := problem->>'details';
    end if;
    return invoices_internal.seed_answer(
      invoices_internal.seed_error_status(r->>'seed', invoices_internal.http_status(code)),
      invoices_internal.seed_error_body(message, code, detail));
  end;
  return invoices_internal.seed_answer((result->>'status')::int, result->'body');
end
$$;

create or replace function invoices_internal.seed_v1_create_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  a jsonb := invoices_internal.seed_v1_create_args(body, (current_date + 7)::text);
  obj jsonb;
begin
  obj := invoices.create_invoice(
    lines => a->'lines', currency => a->>'currency', customer_email => a->>'customer_email',
    customer_name => a->>'customer_name', customer_company => a->>'customer_company',
    tax_rate => (a->>'tax_rate')::numeric, discount_amount => (a->>'discount_amount')::numeric,
    due_date => (a->>'due_date')::date, notes => a->>'notes', metadata => a->'metadata',
    asset => a->>'asset', send => coalesce((a->>'send')::boolean, false));
  return jsonb_build_object('status', 201,
    'body', invoices_internal.seed_v1_invoice(invoices_internal.seed_invoice(obj->>'id')));
end
$$;

create or replace function invoices_internal.seed_v1_list_invoices(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql stable
as $$
declare
  p jsonb := invoices_internal.seed_v1_list_params(query);
  mid uuid := invoices_internal.require_merchant();
  total bigint;
  page jsonb;
begin
  select count(*) into total from invoices.invoices r
   where r.merchant_id = mid and (p->>'status' is null or r.status = p->>'status');
  select coalesce(jsonb_agg(invoices_internal.seed_v1_invoice(
           to_jsonb(r) || jsonb_build_object('created_unix', extract(epoch from r.created_at)::bigint))
           order by r.created_at desc, r.id desc), '[]')
    into page
    from (select * from invoices.invoices r
           where r.merchant_id = mid and (p->>'status' is null or r.status = p->>'status')
           order by r.created_at desc, r.id desc
           limit (p->>'limit')::int offset (p->>'offset')::bigint) r;
  return jsonb_build_object('status', 200, 'body', jsonb_build_object(
    'invoices', page, 'total', total, 'limit', (p->>'limit')::int, 'offset', (p->>'offset')::bigint,
    'page', (p->>'page')::bigint));
end
$$;

create or replace function invoices_internal.seed_btpay_get_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql stable
as $$
declare
  payments boolean := invoices_internal.seed_v1_include_payments(query);
  obj jsonb := invoices_internal.seed_invoice(params->>'ref');
  answer jsonb := invoices_internal.seed_v1_invoice(obj);
begin
  if payments then
    answer := answer || jsonb_build_object('payments', (
      select coalesce(jsonb_agg(jsonb_build_object(
               'txid', p.txid, 'output_index', p.output_index, 'chain', p.chain, 'asset', p.asset,
               'amount', p.amount::text, 'status', p.status, 'confirmations', p.confirmations,
               'block_height', p.block_height, 'late', p.late,
               'detected_at', extract(epoch from p.detected_at)::bigint) order by p.id), '[]')
        from invoices.payments p
       where p.merchant_id = (obj->>'merchant_id')::uuid and p.invoice_id = (obj->>'id')::uuid));
  end if;
  return jsonb_build_object('status', 200, 'body', answer);
end
$$;

create or replace function invoices_internal.seed_btpay_finalize_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  obj jsonb := invoices.finalize_invoice(params->>'ref');
begin
  return jsonb_build_object('status', 200,
    'body', invoices_internal.seed_v1_invoice(invoices_internal.seed_invoice(obj->>'id')));
end
$$;

create or replace function invoices_internal.seed_btpay_invoice_status(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql stable
as $$
begin
  return jsonb_build_object('status', 200,
    'body', invoices_internal.seed_v1_status(invoices_internal.seed_invoice(params->>'ref')));
end
$$;

create or replace function invoices_internal.seed_btpay_cancel_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  obj jsonb := invoices.cancel_invoice(params->>'ref');
begin
  return jsonb_build_object('status', 200, 'body', jsonb_build_object('ok', true, 'status', obj->>'status'));
end
$$;

create or replace function invoices_internal.http_pre_request() returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  headers json := coalesce(nullif(current_setting('request.headers', true), ''), '{}')::json;
  need text := invoices_internal.required_scope(coalesce(current_setting('request.method', true), 'GET'),
                                                coalesce(current_setting('request.path', true), '/'));
  presented text := nullif(btrim(headers->>'x-api-key'), '');
  client text;
  owner record;
  k record;
  refusal text;
  refusal_detail text;
begin
  -- The seed APIs answer a refusal in their own shape ({"error": …}): for their entry point the
  -- check runs once more below, and what it raises is kept for invoices.seed_request to answer.
  if current_setting('request.path', true) = '/rpc/seed_request'
     and coalesce(current_setting('invoices.gateway_checking', true), '') = '' then
    perform set_config('invoices.gateway_checking', 'on', true);
    begin
      perform invoices_internal.http_pre_request();
    exception when sqlstate 'PGRST' then
      get stacked diagnostics refusal = message_text, refusal_detail = pg_exception_detail;
      perform set_config('invoices.gateway_refusal',
        (refusal::jsonb || jsonb_build_object('status', refusal_detail::jsonb->'status',
                                              'headers', refusal_detail::jsonb->'headers'))::text, true);
    end;
    return;
  end if;
  if presented is null and headers->>'authorization' ~* '^bearer\s' then
    presented := nullif(btrim(substr(headers->>'authorization', 8)), '');
  end if;
  if presented is null then
    -- Anonymous: counted per client address. The web front sets X-Real-IP to the peer's
    -- address; PostgREST itself listens on loopback only, and calls made to it directly share
    -- the bucket "local".
    client := coalesce(nullif(btrim(split_part(headers->>'x-real-ip', ',', 1)), ''), 'local');
    perform invoices_internal.count_request(md5('anonymous ' || client)::uuid,
      current_setting('invoices.anonymous_rate_limit_per_minute')::int, 'this client address');
    perform set_config('invoices.api_key_scopes', 'anonymous', true);
    if need in ('anonymous', 'public_read') then
      return;
    end if;
    perform invoices_internal.raise('28000', 'an API key is required', null,
      'send it as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;

  select h.merchant_id, h.key_id into owner
    from invoices_internal.api_key_hashes h
   where h.key_hash = encode(sha256(convert_to(presented, 'UTF8')), 'hex');
  select id, merchant_id, scopes, rate_limit_per_minute, revoked_at into k
    from invoices_internal.api_keys
   where merchant_id = owner.merchant_id and id = owner.key_id;
  if not found or k.revoked_at is not null then
    perform invoices_internal.raise('28000',
      case when found then 'this API key was revoked' else 'invalid API key' end, null,
      'send an active key as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;
  perform invoices_internal.count_request(k.id,
    coalesce(k.rate_limit_per_minute, current_setting('invoices.rate_limit_per_minute')::int), 'this API key');

  if need = 'method_not_allowed' then
    perform invoices_internal.raise('0A000',
      format('%s %s is not allowed: the views are read-only', current_setting('request.method', true),
             current_setting('request.path', true)), null,
      'change data through the functions under /rpc/ (create_invoice, cancel_invoice, ...)');
  end if;
  -- the functions and views check the scope themselves; this is the second line
  if not invoices_internal.scope_allows(need, k.scopes) then
    perform invoices_internal.check_scope(need, k.scopes, current_setting('request.path', true));
  end if;

  perform set_config('invoices.merchant_id', k.merchant_id::text, true),
          set_config('invoices.api_key_id', k.id::text, true),
          set_config('invoices.api_key_scopes', array_to_string(k.scopes, ','), true),
          set_config('invoices.idempotency_key', coalesce(headers->>'idempotency-key', ''), true);
end
$$;
comment on function invoices.seed_request(text) is
  'The seed APIs (Living Invoices, Kibble, BTPay, apiforcrypto) as their documents print them: the web front sends every request under /api/ here, with its method, path and query in X-Seed-Method, X-Seed-Path and X-Seed-Query and its body as text. The route comes from one routing table; each route checks its own scope. Answers are the seed''s shapes and status codes; errors are {"error": …} with the bad fields, and write nothing.';
revoke execute on function invoices_internal.seed_answer(integer, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_invoice(text) from public;
revoke execute on function invoices_internal.seed_v1_create_invoice(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_v1_list_invoices(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_btpay_get_invoice(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_btpay_finalize_invoice(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_btpay_invoice_status(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_btpay_cancel_invoice(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices.seed_request(text) from public;
grant execute on function invoices.seed_request(text) to invoices_admin;
grant execute on function invoices.seed_request(text) to invoices_api;

-- The seed APIs, BTPay's payment links, rates and webhooks, and the webhook formats.
alter table invoices_internal.webhook_endpoints add column format text not null default 'invoices'
  check (format in ('invoices', 'living_invoices', 'btpay'));
drop function invoices.create_webhook_endpoint(text, text[], text);
drop function invoices_internal.claim_deliveries(integer, integer);
CREATE  FUNCTION invoices_internal."webhook_body"(
	"format" TEXT, /* & str */
	"envelope" jsonb /* JsonB */
) RETURNS jsonb /* JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'webhook_body_wrapper';
revoke execute on function invoices_internal.webhook_body(text, jsonb) from public;
CREATE  FUNCTION invoices_internal."seed_btpay_payment_link_args"(
	"body" jsonb /* Option < JsonB > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_btpay_payment_link_args_wrapper';
revoke execute on function invoices_internal.seed_btpay_payment_link_args(jsonb) from public;
CREATE  FUNCTION invoices_internal."seed_btpay_payment_link"(
	"link" jsonb, /* JsonB */
	"base_url" TEXT /* & str */
) RETURNS jsonb /* JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_btpay_payment_link_wrapper';
revoke execute on function invoices_internal.seed_btpay_payment_link(jsonb, text) from public;
CREATE  FUNCTION invoices_internal."seed_btpay_webhook_args"(
	"body" jsonb /* Option < JsonB > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_btpay_webhook_args_wrapper';
revoke execute on function invoices_internal.seed_btpay_webhook_args(jsonb) from public;
CREATE  FUNCTION invoices_internal."seed_btpay_webhook"(
	"endpoint" jsonb, /* JsonB */
	"secret" TEXT /* Option < & str > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_btpay_webhook_wrapper';
revoke execute on function invoices_internal.seed_btpay_webhook(jsonb, text) from public;
CREATE  FUNCTION invoices_internal."seed_btpay_webhook_id"(
	"id" TEXT /* & str */
) RETURNS uuid /* pgrx :: Uuid */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_btpay_webhook_id_wrapper';
revoke execute on function invoices_internal.seed_btpay_webhook_id(text) from public;
create or replace function invoices.create_webhook_endpoint(url text, events text[] default '{*}', description text default null,
                                                  format text default 'invoices')
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_webhook_endpoint');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  known text[] := array['*', 'invoice.created', 'invoice.finalized', 'invoice.viewed', 'invoice.partial',
                        'invoice.paid', 'invoice.confirmed', 'invoice.expired', 'invoice.overdue',
                        'invoice.cancelled', 'invoice.reverted', 'payment.received', 'payment.confirmed', 'payment.reverted'];
  errors jsonb := '[]';
  problem text;
  e invoices_internal.webhook_endpoints;
begin
  problem := coalesce(invoices_internal.destination_problem(url), case when url is null then 'is required' end);
  if problem is not null then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'url', 'message', problem));
  end if;
  if events is null or cardinality(events) = 0 or not (events <@ known) then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'events', 'message',
      'must list events among ' || array_to_string(known, ', ')));
  end if;
  if format is null or format not in ('invoices', 'living_invoices', 'btpay') then
    errors := errors || '[{"field": "format", "message": "must be invoices, living_invoices or btpay"}]';
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023',
      pg_catalog.format('invalid webhook endpoint: %s', (select string_agg(x->>'field', ', ') from jsonb_array_elements(errors) x)),
      jsonb_build_object('errors', errors)::text, 'create_webhook_endpoint(''https://example.com/hooks'', ''{invoice.paid}'')');
  end if;
  insert into invoices_internal.webhook_endpoints (merchant_id, url, events, description, secret, format)
  values (mid, url, events, description, invoices_internal.new_webhook_secret(), create_webhook_endpoint.format)
  returning * into e;
  return jsonb_build_object('id', e.id, 'url', e.url, 'events', to_jsonb(e.events), 'description', e.description,
                            'active', e.active, 'created_at', e.created_at, 'format', e.format, 'secret', e.secret);
end
$$;

create or replace view invoices.webhook_endpoints with (security_barrier) as
select e.merchant_id, e.id, e.url, e.events, e.description, e.active, e.created_at, e.deleted_at, e.format
  from invoices_internal.webhook_endpoints e
 where e.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('webhook_endpoints', current_user);

create or replace function invoices_internal.claim_deliveries(n integer, lease_seconds integer)
returns table (merchant_id uuid, id bigint, url text, secret text, event text, event_id uuid, body text, attempt integer,
               format text)
language plpgsql volatile
as $$
declare
  lease timestamptz := now() + make_interval(secs => lease_seconds);
  g record;
  k record;
  locked bigint[];
  ended bigint[];
  inactive uuid[];
begin
  -- the n most overdue deliveries are read without locks; each merchant's are then locked with
  -- SKIP LOCKED (another worker may hold some) and leased in statements naming that merchant
  for g in select d.merchant_id as mid, array_agg(d.id) as ids
             from (select x.merchant_id, x.id from invoices_internal.webhook_deliveries x
                    where (x.status = 'pending' and x.next_attempt_at <= now())
                       or (x.status = 'delivering' and x.lease_until < now())
                    order by x.next_attempt_at
                    limit n) d
            group by d.merchant_id
  loop
    locked := '{}';
    ended := '{}';
    -- a deleted or deactivated endpoint gets nothing more: its queued deliveries end here
    inactive := array(select e.id from invoices_internal.webhook_endpoints e where e.merchant_id = g.mid and not e.active);
    -- locked by key (the due index would scan every due row), then checked again: a row that
    -- changed since the read above is locked in its latest version
    for k in select x.id, x.status, x.next_attempt_at, x.lease_until, x.endpoint_id from invoices_internal.webhook_deliveries x
              where x.merchant_id = g.mid and x.id = any (g.ids)
              order by x.id
              for update skip locked
    loop
      if (k.status = 'pending' and k.next_attempt_at <= now()) or (k.status = 'delivering' and k.lease_until < now()) then
        if k.endpoint_id = any (inactive) then
          ended := ended || k.id;
        else
          locked := locked || k.id;
        end if;
      end if;
    end loop;
    if cardinality(ended) > 0 then
      update invoices_internal.webhook_deliveries d
         set status = 'dead', lease_until = null, last_error = 'not sent: the endpoint was deleted or deactivated'
       where d.merchant_id = g.mid and d.id = any (ended);
    end if;
    return query
    with claimed as (
      update invoices_internal.webhook_deliveries d
         set status = 'delivering', lease_until = lease
       where d.merchant_id = g.mid and d.id = any (locked)
      returning d.*
    )
    select c.merchant_id, c.id, c.url, coalesce(c.secret, e.secret), v.event, v.id,
           case when coalesce(e.format, 'invoices') = 'invoices' then envelope::text
                -- a seed's format (domain::seeds::webhooks), with what it prints beside the event
                else invoices_internal.webhook_body(e.format, envelope || jsonb_build_object(
                       'latest_txid', (select p.txid from invoices_internal.payments p
                                        where p.merchant_id = g.mid and p.invoice_id = v.invoice_id
                                          and p.status <> 'reverted' order by p.id desc limit 1),
                       'asset_amount', (select q.asset_amount::text from invoices_internal.quotes q
                                         where q.merchant_id = g.mid and q.invoice_id = v.invoice_id
                                         order by q.created_at desc limit 1)))::text end,
           c.attempts + 1,
           coalesce(e.format, 'invoices')
      from claimed c
      join invoices_internal.events v on v.merchant_id = g.mid and v.id = c.event_id
      left join invoices_internal.webhook_endpoints e on e.merchant_id = g.mid and e.id = c.endpoint_id
      cross join lateral (select jsonb_build_object('id', v.id, 'event', v.event,
                              'timestamp', to_char(v.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                              'data', v.data) as envelope) x;
  end loop;
end
$$;

create or replace function invoices_internal.seed_btpay_list_payment_links(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql stable
as $$
declare
  mid uuid := invoices_internal.require_merchant();
begin
  return jsonb_build_object('status', 200, 'body', jsonb_build_object('payment_links', (
    select coalesce(jsonb_agg(invoices_internal.seed_btpay_payment_link(
             to_jsonb(l) || jsonb_build_object('created_unix', extract(epoch from l.created_at)::bigint),
             coalesce(current_setting('invoices.public_base_url', true), ''))
             order by l.created_at desc, l.id), '[]')
      from invoices.payment_links l where l.merchant_id = mid)));
end
$$;

create or replace function invoices_internal.seed_btpay_create_payment_link(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  a jsonb := invoices_internal.seed_btpay_payment_link_args(body);
  link jsonb;
begin
  link := invoices.create_payment_link(
    title => a->>'title', slug => a->>'slug', description => a->>'description',
    amount => (a->>'amount')::numeric, currency => a->>'currency', asset => a->>'asset',
    redirect_url => a->>'redirect_url', metadata => coalesce(a->'metadata', '{}'));
  return jsonb_build_object('status', 201, 'body', (
    select invoices_internal.seed_btpay_payment_link(
             to_jsonb(l) || jsonb_build_object('created_unix', extract(epoch from l.created_at)::bigint),
             coalesce(current_setting('invoices.public_base_url', true), ''))
      from invoices.payment_links l
     where l.merchant_id = invoices_internal.require_merchant() and l.id = (link->>'id')::uuid));
end
$$;

create or replace function invoices_internal.seed_btpay_deactivate_payment_link(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
begin
  perform invoices.deactivate_payment_link(params->>'slug');
  return jsonb_build_object('status', 200, 'body', jsonb_build_object('ok', true));
end
$$;

create or replace function invoices_internal.seed_btpay_rates(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql stable
as $$
begin
  return jsonb_build_object('status', 200, 'body', jsonb_build_object('rates', (
    select coalesce(jsonb_agg(jsonb_build_object('currency', r.currency, 'rate', r.median_rate::text)
                              order by r.currency), '[]')
      from (select distinct on (x.currency) x.currency, x.median_rate
              from invoices.rates x
             where x.asset = 'BTC' and x.median_rate is not null
             order by x.currency) r)));
end
$$;

create or replace function invoices_internal.seed_btpay_list_webhooks(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql stable
as $$
declare
  mid uuid := invoices_internal.require_merchant();
begin
  return jsonb_build_object('status', 200, 'body', jsonb_build_object('webhooks', (
    select coalesce(jsonb_agg(invoices_internal.seed_btpay_webhook(to_jsonb(e), null) order by e.created_at, e.id), '[]')
      from invoices.webhook_endpoints e where e.merchant_id = mid and e.deleted_at is null)));
end
$$;

create or replace function invoices_internal.seed_btpay_create_webhook(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  a jsonb := invoices_internal.seed_btpay_webhook_args(body);
  e jsonb;
begin
  e := invoices.create_webhook_endpoint(a->>'url', array(select jsonb_array_elements_text(a->'events')),
                                        a->>'description', 'btpay');
  return jsonb_build_object('status', 201, 'body', invoices_internal.seed_btpay_webhook(e, e->>'secret'));
end
$$;

create or replace function invoices_internal.seed_btpay_delete_webhook(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
begin
  perform invoices.delete_webhook_endpoint(invoices_internal.seed_btpay_webhook_id(params->>'id'));
  return jsonb_build_object('status', 200, 'body', jsonb_build_object('ok', true));
end
$$;
comment on function invoices.create_webhook_endpoint(text, text[], text, text) is
  'Register a webhook endpoint of the current merchant for events (default {*}: all). Returns {id, url, events, …, secret}: the signing secret (whsec_…) is shown this once. Deliveries carry X-Webhook-Signature (hex HMAC-SHA256 of the body) and Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">. format chooses the body: invoices (the project''s own {id, event, timestamp, data}), living_invoices (Living Invoices'' {event, timestamp, invoice}) or btpay (BTPay''s {event, data, timestamp}, signed in X-BTPay-Signature, named in X-BTPay-Event).';
revoke execute on function invoices.create_webhook_endpoint(text, text[], text, text) from public;
grant execute on function invoices.create_webhook_endpoint(text, text[], text, text) to invoices_admin;
grant execute on function invoices.create_webhook_endpoint(text, text[], text, text) to invoices_api;
revoke execute on function invoices_internal.claim_deliveries(integer, integer) from public;
revoke execute on function invoices_internal.seed_btpay_list_payment_links(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_btpay_create_payment_link(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_btpay_deactivate_payment_link(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_btpay_rates(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_btpay_list_webhooks(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_btpay_create_webhook(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_btpay_delete_webhook(jsonb, jsonb, jsonb) from public;

-- The seed APIs: Kibble (/api/invoices) and apiforcrypto (/api/v1/wallets).
insert into invoices_internal.access_rules (kind, object, scope) values ('function', 'seed_pdf', 'anonymous');
CREATE  FUNCTION invoices_internal."seed_kibble_create_args"(
	"body" jsonb, /* Option < JsonB > */
	"today" TEXT /* & str */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_kibble_create_args_wrapper';
revoke execute on function invoices_internal.seed_kibble_create_args(jsonb, text) from public;
CREATE  FUNCTION invoices_internal."seed_kibble_created"(
	"invoice" jsonb, /* JsonB */
	"base_url" TEXT, /* & str */
	"webhook_secret" TEXT /* Option < & str > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_kibble_created_wrapper';
revoke execute on function invoices_internal.seed_kibble_created(jsonb, text, text) from public;
CREATE  FUNCTION invoices_internal."seed_afc_create_args"(
	"body" jsonb /* Option < JsonB > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_afc_create_args_wrapper';
revoke execute on function invoices_internal.seed_afc_create_args(jsonb) from public;
CREATE  FUNCTION invoices_internal."seed_afc_invoice"(
	"invoice" jsonb, /* JsonB */
	"chain" jsonb, /* JsonB */
	"payments" jsonb, /* JsonB */
	"public" bool /* bool */
) RETURNS jsonb /* JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_afc_invoice_wrapper';
revoke execute on function invoices_internal.seed_afc_invoice(jsonb, jsonb, jsonb, boolean) from public;
create or replace function invoices_internal.seed_kibble_create_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  k jsonb := invoices_internal.seed_kibble_create_args(body, current_date::text);
  a jsonb := k->'invoice';
  mid uuid := invoices_internal.require_merchant();
  w invoices_internal.wallets;
  secret text;
  obj jsonb;
begin
  select * into w from invoices_internal.wallets x where x.merchant_id = mid and x.asset = 'USDC' and x.active;
  if not found then
    perform invoices_internal.raise('55000', 'no USDC wallet to receive the payment',
      '{"errors":[{"field":"wallet_type","message":"the merchant has no USDC wallet"}]}',
      'the merchant adds one with invoices.create_wallet(''USDC'', xpub => … or address => …)');
  end if;
  if k->'wallet'->>'type' = 'byo' and (w.xpub is not null or not exists (
       select 1 from invoices_internal.addresses ad
        where ad.merchant_id = mid and ad.wallet_id = w.id and lower(ad.address) = lower(k->'wallet'->>'address'))) then
    perform invoices_internal.raise('22023', 'invalid invoice: wallet_address is not the merchant''s USDC wallet',
      '{"errors":[{"field":"wallet_address","message":"is not the merchant''s bring-your-own USDC wallet"}]}',
      'the merchant registers it with invoices.create_wallet(''USDC'', address => …)');
  end if;
  if a->>'callback_url' is not null then
    secret := invoices_internal.new_webhook_secret();
  end if;
  obj := invoices.create_invoice(
    lines => a->'lines', currency => 'USDC', asset => 'USDC', customer_email => a->>'customer_email',
    customer_name => a->>'customer_name', customer_address => a->>'customer_address',
    issue_date => (a->>'issue_date')::date, due_date => (a->>'due_date')::date, notes => a->>'notes',
    callback_url => a->>'callback_url', callback_secret => secret);
  update invoices_internal.invoices set merchant_snapshot = k->'merchant'
   where merchant_id = mid and id = (obj->>'id')::uuid;
  perform invoices.finalize_invoice(obj->>'id');
  if (k->>'send_now')::boolean then
    perform invoices.send_invoice(obj->>'id');
  end if;
  return jsonb_build_object('status', 201, 'body', invoices_internal.seed_kibble_created(
    invoices_internal.seed_invoice(obj->>'id'), coalesce(current_setting('invoices.public_base_url', true), ''), secret));
end
$$;

create or replace function invoices_internal.seed_kibble_send_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  e jsonb := invoices.send_invoice(params->>'id');
  obj jsonb := invoices_internal.seed_invoice(params->>'id');
begin
  return jsonb_build_object('status', 200, 'body', jsonb_build_object(
    'invoice_id', obj->'id', 'invoice_number', obj->'invoice_number', 'status', 'queued',
    'to', e->'recipient', 'sent_at', obj->'sent_at'));
end
$$;

create or replace function invoices.seed_pdf(text) returns invoices."application/pdf"
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('seed_pdf');  -- first: invoice_pdf checks who may read
  headers json := coalesce(nullif(current_setting('request.headers', true), ''), '{}')::json;
  path text := coalesce(nullif(headers->>'x-seed-path', ''), '/');
  refusal jsonb := nullif(current_setting('invoices.gateway_refusal', true), '')::jsonb;
  r jsonb := invoices_internal.seed_route(coalesce(nullif(headers->>'x-seed-method', ''), 'GET'), path);
  status integer;
  answer jsonb;
  code text;
  message text;
  detail text;
begin
  if refusal is not null then
    status := (refusal->>'status')::int;
    answer := invoices_internal.seed_error_body(refusal->>'message', refusal->>'code', null);
  elsif r->>'handler' is distinct from 'kibble_invoice_pdf' then
    status := 404;
    answer := jsonb_build_object('error', format('not found: %s', path));
  else
    begin
      return invoices.invoice_pdf(r->'params'->>'id');
    exception when others then
      get stacked diagnostics code = returned_sqlstate, message = message_text, detail = pg_exception_detail;
      if code = 'PGRST' then
        code := message::jsonb->>'code';
        detail := message::jsonb->>'details';
        message := message::jsonb->>'message';
      end if;
      status := invoices_internal.seed_error_status('kibble', invoices_internal.http_status(code));
      answer := invoices_internal.seed_error_body(message, code, detail);
    end;
  end if;
  perform invoices_internal.seed_answer(status, null, '{"Content-Type": "application/json; charset=utf-8"}');
  return convert_to(answer::text, 'UTF8');
end
$$;

create or replace function invoices_internal.seed_afc_chain(chain text) returns jsonb
language sql stable
as $$
  select coalesce((select jsonb_build_object('id', c.id, 'tokens', c.tokens)
                     from invoices_internal.chains c where c.id = chain), jsonb_build_object('id', chain, 'tokens', '{}'::jsonb))
$$;

create or replace function invoices_internal.seed_afc_payments(mid uuid, inv_id uuid) returns jsonb
language sql stable
as $$
  select coalesce(jsonb_agg(jsonb_build_object('txid', p.txid, 'status', p.status, 'amount', p.amount::text)
                            order by p.id), '[]')
    from invoices_internal.payments p where p.merchant_id = mid and p.invoice_id = inv_id
$$;

create or replace function invoices_internal.seed_afc_create_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  c jsonb := invoices_internal.seed_afc_create_args(body);
  a jsonb := c->'invoice';
  mid uuid := invoices_internal.require_merchant();
  w invoices_internal.wallets;
  obj jsonb;
begin
  select * into w from invoices_internal.wallets x where x.merchant_id = mid and x.id::text = params->>'wallet';
  if not found then
    perform invoices_internal.raise('P0002', 'wallet not found', null, 'the wallet id is one of GET /wallets');
  end if;
  if not w.active or w.asset <> a->>'asset' or not exists (
       select 1 from invoices_internal.chains ch
        where ch.id = c->>'blockchain' and ch.active and ch.network = w.network and a->>'asset' = any (ch.assets)) then
    perform invoices_internal.raise('42501',
      format('currency is not active: %s on %s for this wallet', a->>'asset', c->>'blockchain'), null,
      'the wallet must be active, for this symbol, on the network of an active chain of that id');
  end if;
  obj := invoices.create_invoice(
    lines => a->'lines', currency => a->>'currency', asset => a->>'asset',
    markup_percent => (a->>'markup_percent')::numeric, confirmations => (a->>'confirmations')::int,
    expiry_minutes => (a->>'expiry_minutes')::int, pause_minutes => (a->>'pause_minutes')::int,
    callback_url => a->>'callback_url', callback_secret => a->>'callback_secret',
    attempts_callback => (a->>'attempts_callback')::int, success_url => a->>'success_url',
    failed_url => a->>'failed_url', order_id => a->>'order_id', notes => a->>'notes',
    metadata => coalesce(a->'metadata', '{}') || jsonb_build_object('blockchain', c->>'blockchain', 'wallet_id', w.id),
    send => true);
  return jsonb_build_object('status', 200, 'body', invoices_internal.seed_afc_invoice(
    invoices_internal.seed_invoice(obj->>'id') || jsonb_build_object('wallet_id', w.id),
    invoices_internal.seed_afc_chain(c->>'blockchain'),
    invoices_internal.seed_afc_payments(mid, (obj->>'id')::uuid), false));
end
$$;

create or replace function invoices_internal.seed_afc_get_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql stable
as $$
declare
  obj jsonb;
begin
  select to_jsonb(r) || jsonb_build_object('created_unix', extract(epoch from r.created_at)::bigint) into obj
    from invoices_internal.invoice_rows r
   where params->>'uuid' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
     and r.id = (params->>'uuid')::uuid and r.status <> 'draft';
  if obj is null then
    perform invoices_internal.raise('P0002', 'invoice not found', null, null);
  end if;
  return jsonb_build_object('status', 200, 'body', invoices_internal.seed_afc_invoice(obj,
    invoices_internal.seed_afc_chain(obj->'metadata'->>'blockchain'),
    invoices_internal.seed_afc_payments((obj->>'merchant_id')::uuid, (obj->>'id')::uuid), true));
end
$$;

create or replace function invoices_internal.http_pre_request() returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  headers json := coalesce(nullif(current_setting('request.headers', true), ''), '{}')::json;
  need text := invoices_internal.required_scope(coalesce(current_setting('request.method', true), 'GET'),
                                                coalesce(current_setting('request.path', true), '/'));
  presented text := nullif(btrim(headers->>'x-api-key'), '');
  client text;
  owner record;
  k record;
  refusal text;
  refusal_detail text;
begin
  -- The seed APIs answer a refusal in their own shape ({"error": …}): for their entry point the
  -- check runs once more below, and what it raises is kept for invoices.seed_request to answer.
  if current_setting('request.path', true) in ('/rpc/seed_request', '/rpc/seed_pdf')
     and coalesce(current_setting('invoices.gateway_checking', true), '') = '' then
    perform set_config('invoices.gateway_checking', 'on', true);
    begin
      perform invoices_internal.http_pre_request();
    exception when sqlstate 'PGRST' then
      get stacked diagnostics refusal = message_text, refusal_detail = pg_exception_detail;
      perform set_config('invoices.gateway_refusal',
        (refusal::jsonb || jsonb_build_object('status', refusal_detail::jsonb->'status',
                                              'headers', refusal_detail::jsonb->'headers'))::text, true);
    end;
    return;
  end if;
  if presented is null and headers->>'authorization' ~* '^bearer\s' then
    presented := nullif(btrim(substr(headers->>'authorization', 8)), '');
  end if;
  if presented is null then
    -- Anonymous: counted per client address. The web front sets X-Real-IP to the peer's
    -- address; PostgREST itself listens on loopback only, and calls made to it directly share
    -- the bucket "local".
    client := coalesce(nullif(btrim(split_part(headers->>'x-real-ip', ',', 1)), ''), 'local');
    perform invoices_internal.count_request(md5('anonymous ' || client)::uuid,
      current_setting('invoices.anonymous_rate_limit_per_minute')::int, 'this client address');
    perform set_config('invoices.api_key_scopes', 'anonymous', true);
    if need in ('anonymous', 'public_read') then
      return;
    end if;
    perform invoices_internal.raise('28000', 'an API key is required', null,
      'send it as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;

  select h.merchant_id, h.key_id into owner
    from invoices_internal.api_key_hashes h
   where h.key_hash = encode(sha256(convert_to(presented, 'UTF8')), 'hex');
  select id, merchant_id, scopes, rate_limit_per_minute, revoked_at into k
    from invoices_internal.api_keys
   where merchant_id = owner.merchant_id and id = owner.key_id;
  if not found or k.revoked_at is not null then
    perform invoices_internal.raise('28000',
      case when found then 'this API key was revoked' else 'invalid API key' end, null,
      'send an active key as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;
  perform invoices_internal.count_request(k.id,
    coalesce(k.rate_limit_per_minute, current_setting('invoices.rate_limit_per_minute')::int), 'this API key');

  if need = 'method_not_allowed' then
    perform invoices_internal.raise('0A000',
      format('%s %s is not allowed: the views are read-only', current_setting('request.method', true),
             current_setting('request.path', true)), null,
      'change data through the functions under /rpc/ (create_invoice, cancel_invoice, ...)');
  end if;
  -- the functions and views check the scope themselves; this is the second line
  if not invoices_internal.scope_allows(need, k.scopes) then
    perform invoices_internal.check_scope(need, k.scopes, current_setting('request.path', true));
  end if;

  perform set_config('invoices.merchant_id', k.merchant_id::text, true),
          set_config('invoices.api_key_id', k.id::text, true),
          set_config('invoices.api_key_scopes', array_to_string(k.scopes, ','), true),
          set_config('invoices.idempotency_key', coalesce(headers->>'idempotency-key', ''), true);
end
$$;
comment on function invoices.seed_pdf(text) is
  'Kibble''s GET /api/invoices/{id}/pdf, as the web front passes it (X-Seed-Path): the invoice''s PDF (invoice_pdf: the merchant''s own with its key, a finalized one by id or slug without), errors as {"error": …} in JSON.';
revoke execute on function invoices_internal.seed_kibble_create_invoice(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_kibble_send_invoice(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_afc_chain(text) from public;
revoke execute on function invoices_internal.seed_afc_payments(uuid, uuid) from public;
revoke execute on function invoices_internal.seed_afc_create_invoice(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices_internal.seed_afc_get_invoice(jsonb, jsonb, jsonb) from public;
revoke execute on function invoices.seed_pdf(text) from public;
grant execute on function invoices.seed_pdf(text) to invoices_admin;
grant execute on function invoices.seed_pdf(text) to invoices_api;

-- apiforcrypto callbacks in apiforcryptos format.
create or replace function invoices_internal.claim_deliveries(n integer, lease_seconds integer)
returns table (merchant_id uuid, id bigint, url text, secret text, event text, event_id uuid, body text, attempt integer,
               format text)
language plpgsql volatile
as $$
declare
  lease timestamptz := now() + make_interval(secs => lease_seconds);
  g record;
  k record;
  locked bigint[];
  ended bigint[];
  inactive uuid[];
begin
  -- the n most overdue deliveries are read without locks; each merchant's are then locked with
  -- SKIP LOCKED (another worker may hold some) and leased in statements naming that merchant
  for g in select d.merchant_id as mid, array_agg(d.id) as ids
             from (select x.merchant_id, x.id from invoices_internal.webhook_deliveries x
                    where (x.status = 'pending' and x.next_attempt_at <= now())
                       or (x.status = 'delivering' and x.lease_until < now())
                    order by x.next_attempt_at
                    limit n) d
            group by d.merchant_id
  loop
    locked := '{}';
    ended := '{}';
    -- a deleted or deactivated endpoint gets nothing more: its queued deliveries end here
    inactive := array(select e.id from invoices_internal.webhook_endpoints e where e.merchant_id = g.mid and not e.active);
    -- locked by key (the due index would scan every due row), then checked again: a row that
    -- changed since the read above is locked in its latest version
    for k in select x.id, x.status, x.next_attempt_at, x.lease_until, x.endpoint_id from invoices_internal.webhook_deliveries x
              where x.merchant_id = g.mid and x.id = any (g.ids)
              order by x.id
              for update skip locked
    loop
      if (k.status = 'pending' and k.next_attempt_at <= now()) or (k.status = 'delivering' and k.lease_until < now()) then
        if k.endpoint_id = any (inactive) then
          ended := ended || k.id;
        else
          locked := locked || k.id;
        end if;
      end if;
    end loop;
    if cardinality(ended) > 0 then
      update invoices_internal.webhook_deliveries d
         set status = 'dead', lease_until = null, last_error = 'not sent: the endpoint was deleted or deactivated'
       where d.merchant_id = g.mid and d.id = any (ended);
    end if;
    return query
    with claimed as (
      update invoices_internal.webhook_deliveries d
         set status = 'delivering', lease_until = lease
       where d.merchant_id = g.mid and d.id = any (locked)
      returning d.*
    )
    select c.merchant_id, c.id, c.url, coalesce(c.secret, e.secret), v.event, v.id,
           case when fmt = 'invoices' then envelope::text
                -- a seed's format (domain::seeds::webhooks), with what it prints beside the event
                else invoices_internal.webhook_body(fmt, envelope || jsonb_build_object(
                       'secret_key', case when fmt = 'apiforcrypto' then c.secret end,
                       'latest_txid', (select p.txid from invoices_internal.payments p
                                        where p.merchant_id = g.mid and p.invoice_id = v.invoice_id
                                          and p.status <> 'reverted' order by p.id desc limit 1),
                       'asset_amount', (select q.asset_amount::text from invoices_internal.quotes q
                                         where q.merchant_id = g.mid and q.invoice_id = v.invoice_id
                                         order by q.created_at desc limit 1)))::text end,
           c.attempts + 1,
           fmt
      from claimed c
      join invoices_internal.events v on v.merchant_id = g.mid and v.id = c.event_id
      left join invoices_internal.webhook_endpoints e on e.merchant_id = g.mid and e.id = c.endpoint_id
      cross join lateral (select jsonb_build_object('id', v.id, 'event', v.event,
                              'timestamp', to_char(v.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                              'data', v.data) as envelope,
                                 -- an endpoint's format, or for an invoice's own callback the one
                                 -- its creator asked for (apiforcrypto's invoices)
                                 case when c.endpoint_id is null
                                      then case when v.data->'metadata'->>'callback_format' = 'apiforcrypto'
                                                then 'apiforcrypto' else 'invoices' end
                                      else coalesce(e.format, 'invoices') end as fmt) x;
  end loop;
end
$$;

create or replace function invoices_internal.seed_afc_create_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  c jsonb := invoices_internal.seed_afc_create_args(body);
  a jsonb := c->'invoice';
  mid uuid := invoices_internal.require_merchant();
  w invoices_internal.wallets;
  obj jsonb;
begin
  select * into w from invoices_internal.wallets x where x.merchant_id = mid and x.id::text = params->>'wallet';
  if not found then
    perform invoices_internal.raise('P0002', 'wallet not found', null, 'the wallet id is one of GET /wallets');
  end if;
  if not w.active or w.asset <> a->>'asset' or not exists (
       select 1 from invoices_internal.chains ch
        where ch.id = c->>'blockchain' and ch.active and ch.network = w.network and a->>'asset' = any (ch.assets)) then
    perform invoices_internal.raise('42501',
      format('currency is not active: %s on %s for this wallet', a->>'asset', c->>'blockchain'), null,
      'the wallet must be active, for this symbol, on the network of an active chain of that id');
  end if;
  obj := invoices.create_invoice(
    lines => a->'lines', currency => a->>'currency', asset => a->>'asset',
    markup_percent => (a->>'markup_percent')::numeric, confirmations => (a->>'confirmations')::int,
    expiry_minutes => (a->>'expiry_minutes')::int, pause_minutes => (a->>'pause_minutes')::int,
    callback_url => a->>'callback_url', callback_secret => a->>'callback_secret',
    attempts_callback => (a->>'attempts_callback')::int, success_url => a->>'success_url',
    failed_url => a->>'failed_url', order_id => a->>'order_id', notes => a->>'notes',
    metadata => coalesce(a->'metadata', '{}') || jsonb_build_object('blockchain', c->>'blockchain', 'wallet_id', w.id,
                                                                      'callback_format', 'apiforcrypto'),
    send => true);
  return jsonb_build_object('status', 200, 'body', invoices_internal.seed_afc_invoice(
    invoices_internal.seed_invoice(obj->>'id') || jsonb_build_object('wallet_id', w.id),
    invoices_internal.seed_afc_chain(c->>'blockchain'),
    invoices_internal.seed_afc_payments(mid, (obj->>'id')::uuid), false));
end
$$;

-- Kibble callbacks: paid, partial and excess only, in Kibbles format.
create or replace function invoices_internal.emit_events(i invoices_internal.invoices, events text[], payment jsonb default null,
                                              audit_from text[] default null, audit_to text[] default null)
returns void
language plpgsql volatile
as $$
declare
  data jsonb := jsonb_build_object(
    'id', i.id, 'invoice_number', i.invoice_number, 'status', i.status, 'currency', i.currency,
    'total', i.total::text, 'amount_paid', i.amount_paid::text, 'asset', i.asset,
    'asset_paid', i.asset_paid::text, 'address', i.deposit_address, 'overpaid', i.overpaid,
    'paid_late', i.paid_late, 'order_id', i.order_id, 'metadata', i.metadata);
  retries integer := invoices_internal.retry_count();
  actor text := case when audit_to is not null then invoices_internal.current_actor() end;
begin
  if payment is not null then
    data := data || jsonb_build_object('payment', payment);
  end if;
  with audit as (
    insert into invoices_internal.audit_log (merchant_id, invoice_id, from_status, to_status, event, actor)
    select i.merchant_id, i.id, t.from_status, t.to_status, t.event, actor
      from unnest(audit_from, audit_to, events) t(from_status, to_status, event)
     where audit_to is not null),
  ev as (
    insert into invoices_internal.events (merchant_id, id, event, invoice_id, data)
    select i.merchant_id, invoices_internal.uuid_v7(), e.event, i.id, data
      from unnest(events) with ordinality e(event, n)
     order by e.n
    returning id, event)
  insert into invoices_internal.webhook_deliveries (merchant_id, event_id, endpoint_id, url, secret, max_retries)
  select i.merchant_id, d.event_id, d.endpoint_id, d.url, d.secret, d.max_retries
    from (select ev.id as event_id, ev.event, w.id as endpoint_id, w.url, null::text as secret,
                 retries as max_retries, 1 as kind
            from ev join invoices_internal.webhook_endpoints w
              on w.merchant_id = i.merchant_id and w.active and ('*' = any (w.events) or ev.event = any (w.events))
          union all
          select ev.id, ev.event, null, i.callback_url, i.callback_secret, coalesce(i.attempts_callback, retries), 2
            from ev
           where i.callback_url is not null
             -- an invoice may name the events its callback takes (Kibble's: paid, partial)
             and (i.metadata->'callback_events' is null or i.metadata->'callback_events' ? ev.event)) d
   order by array_position(events, d.event), d.kind, d.endpoint_id;
end
$$;

create or replace function invoices_internal.claim_deliveries(n integer, lease_seconds integer)
returns table (merchant_id uuid, id bigint, url text, secret text, event text, event_id uuid, body text, attempt integer,
               format text)
language plpgsql volatile
as $$
declare
  lease timestamptz := now() + make_interval(secs => lease_seconds);
  g record;
  k record;
  locked bigint[];
  ended bigint[];
  inactive uuid[];
begin
  -- the n most overdue deliveries are read without locks; each merchant's are then locked with
  -- SKIP LOCKED (another worker may hold some) and leased in statements naming that merchant
  for g in select d.merchant_id as mid, array_agg(d.id) as ids
             from (select x.merchant_id, x.id from invoices_internal.webhook_deliveries x
                    where (x.status = 'pending' and x.next_attempt_at <= now())
                       or (x.status = 'delivering' and x.lease_until < now())
                    order by x.next_attempt_at
                    limit n) d
            group by d.merchant_id
  loop
    locked := '{}';
    ended := '{}';
    -- a deleted or deactivated endpoint gets nothing more: its queued deliveries end here
    inactive := array(select e.id from invoices_internal.webhook_endpoints e where e.merchant_id = g.mid and not e.active);
    -- locked by key (the due index would scan every due row), then checked again: a row that
    -- changed since the read above is locked in its latest version
    for k in select x.id, x.status, x.next_attempt_at, x.lease_until, x.endpoint_id from invoices_internal.webhook_deliveries x
              where x.merchant_id = g.mid and x.id = any (g.ids)
              order by x.id
              for update skip locked
    loop
      if (k.status = 'pending' and k.next_attempt_at <= now()) or (k.status = 'delivering' and k.lease_until < now()) then
        if k.endpoint_id = any (inactive) then
          ended := ended || k.id;
        else
          locked := locked || k.id;
        end if;
      end if;
    end loop;
    if cardinality(ended) > 0 then
      update invoices_internal.webhook_deliveries d
         set status = 'dead', lease_until = null, last_error = 'not sent: the endpoint was deleted or deactivated'
       where d.merchant_id = g.mid and d.id = any (ended);
    end if;
    return query
    with claimed as (
      update invoices_internal.webhook_deliveries d
         set status = 'delivering', lease_until = lease
       where d.merchant_id = g.mid and d.id = any (locked)
      returning d.*
    )
    select c.merchant_id, c.id, c.url, coalesce(c.secret, e.secret), v.event, v.id,
           case when fmt = 'invoices' then envelope::text
                -- a seed's format (domain::seeds::webhooks), with what it prints beside the event
                else invoices_internal.webhook_body(fmt, envelope || jsonb_build_object(
                       'secret_key', case when fmt = 'apiforcrypto' then c.secret end,
                       'latest_txid', (select p.txid from invoices_internal.payments p
                                        where p.merchant_id = g.mid and p.invoice_id = v.invoice_id
                                          and p.status <> 'reverted' order by p.id desc limit 1),
                       'asset_amount', (select q.asset_amount::text from invoices_internal.quotes q
                                         where q.merchant_id = g.mid and q.invoice_id = v.invoice_id
                                         order by q.created_at desc limit 1)))::text end,
           c.attempts + 1,
           fmt
      from claimed c
      join invoices_internal.events v on v.merchant_id = g.mid and v.id = c.event_id
      left join invoices_internal.webhook_endpoints e on e.merchant_id = g.mid and e.id = c.endpoint_id
      cross join lateral (select jsonb_build_object('id', v.id, 'event', v.event,
                              'timestamp', to_char(v.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                              'data', v.data) as envelope,
                                 -- an endpoint's format, or for an invoice's own callback the one
                                 -- its creator asked for (apiforcrypto's invoices)
                                 case when c.endpoint_id is null
                                      then case when v.data->'metadata'->>'callback_format' in ('apiforcrypto', 'kibble')
                                                then v.data->'metadata'->>'callback_format' else 'invoices' end
                                      else coalesce(e.format, 'invoices') end as fmt) x;
  end loop;
end
$$;

create or replace function invoices_internal.seed_kibble_create_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  k jsonb := invoices_internal.seed_kibble_create_args(body, current_date::text);
  a jsonb := k->'invoice';
  mid uuid := invoices_internal.require_merchant();
  w invoices_internal.wallets;
  secret text;
  obj jsonb;
begin
  select * into w from invoices_internal.wallets x where x.merchant_id = mid and x.asset = 'USDC' and x.active;
  if not found then
    perform invoices_internal.raise('55000', 'no USDC wallet to receive the payment',
      '{"errors":[{"field":"wallet_type","message":"the merchant has no USDC wallet"}]}',
      'the merchant adds one with invoices.create_wallet(''USDC'', xpub => … or address => …)');
  end if;
  if k->'wallet'->>'type' = 'byo' and (w.xpub is not null or not exists (
       select 1 from invoices_internal.addresses ad
        where ad.merchant_id = mid and ad.wallet_id = w.id and lower(ad.address) = lower(k->'wallet'->>'address'))) then
    perform invoices_internal.raise('22023', 'invalid invoice: wallet_address is not the merchant''s USDC wallet',
      '{"errors":[{"field":"wallet_address","message":"is not the merchant''s bring-your-own USDC wallet"}]}',
      'the merchant registers it with invoices.create_wallet(''USDC'', address => …)');
  end if;
  if a->>'callback_url' is not null then
    secret := invoices_internal.new_webhook_secret();
  end if;
  obj := invoices.create_invoice(
    lines => a->'lines', currency => 'USDC', asset => 'USDC', customer_email => a->>'customer_email',
    customer_name => a->>'customer_name', customer_address => a->>'customer_address',
    issue_date => (a->>'issue_date')::date, due_date => (a->>'due_date')::date, notes => a->>'notes',
    callback_url => a->>'callback_url', callback_secret => secret,
    -- Kibble posts to webhook_url when the invoice is paid (or over-paid: excess) or partial
    metadata => case when secret is not null then
                  '{"callback_format": "kibble", "callback_events": ["invoice.partial", "invoice.paid"]}'::jsonb end);
  update invoices_internal.invoices set merchant_snapshot = k->'merchant'
   where merchant_id = mid and id = (obj->>'id')::uuid;
  perform invoices.finalize_invoice(obj->>'id');
  if (k->>'send_now')::boolean then
    perform invoices.send_invoice(obj->>'id');
  end if;
  return jsonb_build_object('status', 201, 'body', invoices_internal.seed_kibble_created(
    invoices_internal.seed_invoice(obj->>'id'), coalesce(current_setting('invoices.public_base_url', true), ''), secret));
end
$$;

-- BTPay's wire: the merchant's bank-transfer instructions, set once, printed on invoices that take a wire.
alter table invoices_internal.merchants add column bank_instructions text check (length(bank_instructions) between 1 and 2000);
insert into invoices_internal.access_rules (kind, object, scope) values ('function', 'set_bank_instructions', 'admin');
create or replace function invoices.set_bank_instructions(instructions text) returns jsonb
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

create or replace function invoices_internal.seed_v1_create_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  a jsonb := invoices_internal.seed_v1_create_args(body, (current_date + 7)::text);
  obj jsonb;
begin
  obj := invoices.create_invoice(
    lines => a->'lines', currency => a->>'currency', customer_email => a->>'customer_email',
    customer_name => a->>'customer_name', customer_company => a->>'customer_company',
    tax_rate => (a->>'tax_rate')::numeric, discount_amount => (a->>'discount_amount')::numeric,
    due_date => (a->>'due_date')::date, notes => a->>'notes', metadata => a->'metadata',
    asset => a->>'asset', send => coalesce((a->>'send')::boolean, false));
  -- a wire: the merchant's bank-transfer instructions go onto the invoice (its PDF, its page)
  if a->'payment_methods' ? 'wire' then
    update invoices_internal.invoices i
       set merchant_snapshot = i.merchant_snapshot || jsonb_build_object('bank_instructions', m.bank_instructions)
      from invoices_internal.merchants m
     where m.id = i.merchant_id and i.merchant_id = (obj->>'merchant_id')::uuid and i.id = (obj->>'id')::uuid
       and m.bank_instructions is not null;
    if not found then
      perform invoices_internal.raise('22023', 'invalid invoice: payment_methods has wire, and no bank instructions are set',
        '{"errors":[{"field":"payment_methods","message":"wire needs the merchant''s bank instructions"}]}',
        'the merchant sets them once with invoices.set_bank_instructions(…)');
    end if;
  end if;
  return jsonb_build_object('status', 201,
    'body', invoices_internal.seed_v1_invoice(invoices_internal.seed_invoice(obj->>'id')));
end
$$;
comment on function invoices.set_bank_instructions(text) is
  'The current merchant''s bank-transfer instructions (IBAN, BIC, reference…), set once: invoices created with payment_methods including "wire" (BTPay''s POST /api/v1/invoices) print them on the invoice, its PDF and its hosted page. Null removes them.';
revoke execute on function invoices.set_bank_instructions(text) from public;
grant execute on function invoices.set_bank_instructions(text) to invoices_admin;
grant execute on function invoices.set_bank_instructions(text) to invoices_api;

-- Living Invoices requests name their fields as Living Invoices does in errors.
create or replace function invoices_internal.seed_v1_create_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  a jsonb := invoices_internal.seed_v1_create_args(body, (current_date + 7)::text);
  obj jsonb;
  code text;
  message text;
  detail text;
begin
  begin
    obj := invoices.create_invoice(
      lines => a->'lines', currency => a->>'currency', customer_email => a->>'customer_email',
      customer_name => a->>'customer_name', customer_company => a->>'customer_company',
      tax_rate => (a->>'tax_rate')::numeric, discount_amount => (a->>'discount_amount')::numeric,
      due_date => (a->>'due_date')::date, notes => a->>'notes', metadata => a->'metadata',
      asset => a->>'asset', send => coalesce((a->>'send')::boolean, false));
  exception when others then
    get stacked diagnostics code = returned_sqlstate, message = message_text, detail = pg_exception_detail;
    if code = 'PGRST' then
      detail := message::jsonb->>'details';
      code := message::jsonb->>'code';
      message := message::jsonb->>'message';
    end if;
    -- a Living Invoices request names its lines items, its e-mail to_email, its name to_name
    if a->>'dialect' = 'living_invoices' then
      message := regexp_replace(regexp_replace(regexp_replace(message, '\mlines\M', 'items', 'g'),
                   '\mcustomer_email\M', 'to_email', 'g'), '\mcustomer_name\M', 'to_name', 'g');
      detail := regexp_replace(regexp_replace(regexp_replace(detail, '"lines', '"items', 'g'),
                  '"customer_email"', '"to_email"', 'g'), '"customer_name"', '"to_name"', 'g');
    end if;
    if detail is not null then
      raise exception using errcode = code, message = message, detail = detail;
    end if;
    raise exception using errcode = code, message = message;
  end;
  -- a wire: the merchant's bank-transfer instructions go onto the invoice (its PDF, its page)
  if a->'payment_methods' ? 'wire' then
    update invoices_internal.invoices i
       set merchant_snapshot = i.merchant_snapshot || jsonb_build_object('bank_instructions', m.bank_instructions)
      from invoices_internal.merchants m
     where m.id = i.merchant_id and i.merchant_id = (obj->>'merchant_id')::uuid and i.id = (obj->>'id')::uuid
       and m.bank_instructions is not null;
    if not found then
      perform invoices_internal.raise('22023', 'invalid invoice: payment_methods has wire, and no bank instructions are set',
        '{"errors":[{"field":"payment_methods","message":"wire needs the merchant''s bank instructions"}]}',
        'the merchant sets them once with invoices.set_bank_instructions(…)');
    end if;
  end if;
  return jsonb_build_object('status', 201,
    'body', invoices_internal.seed_v1_invoice(invoices_internal.seed_invoice(obj->>'id')));
end
$$;

-- The pay button (issue 22): <public_base_url>/widget.js; the checkout may be framed where invoices.checkout_frame_ancestors allows.
insert into invoices_internal.access_rules (kind, object, scope) values ('function', 'widget_js', 'anonymous');
create domain invoices."text/javascript" as text;
CREATE  FUNCTION invoices_internal."widget_source"() RETURNS TEXT /* & '_ str */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'widget_source_wrapper';
revoke execute on function invoices_internal.widget_source() from public;
create or replace function invoices.widget_js() returns invoices."text/javascript"
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('widget_js');  -- first: anyone may load it
begin
  perform set_config('response.headers', '[{"Cache-Control": "public, max-age=300"}, {"Access-Control-Allow-Origin": "*"}, {"X-Content-Type-Options": "nosniff"}]', true);
  return invoices_internal.widget_source();
end
$$;

create or replace function invoices.hosted_invoice(slug text) returns invoices."text/html"
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('hosted_invoice');  -- first: the caller's scope
  i invoices_internal.invoices;
begin
  select * into i from invoices_internal.invoices v
   where v.slug = btrim(coalesce(hosted_invoice.slug, '')) and v.finalized_at is not null;
  if not found then
    perform invoices_internal.raise('P0002', format('invoice "%s" not found', hosted_invoice.slug), null,
      'the hosted page shows a finalized invoice by the slug in its URL');
  end if;
  -- framed only where invoices.checkout_frame_ancestors allows (the pay button's modal)
  perform set_config('response.headers', jsonb_build_array(jsonb_build_object('Cache-Control', 'no-store'),
    jsonb_build_object('Content-Security-Policy', 'frame-ancestors '
      || coalesce(nullif(current_setting('invoices.checkout_frame_ancestors', true), ''), '''none''')),
    jsonb_build_object('Referrer-Policy', 'no-referrer'))::text, true);
  return invoices_internal.render_hosted_page(
    invoices_internal.invoice_document(i.merchant_id, i.id),
    '../rpc/',
    '../rpc/invoice_pdf?ref=' || i.slug,
    (extract(epoch from current_setting('invoices.page_poll_ms')::interval) * 1000)::int,
    (extract(epoch from clock_timestamp()) * 1000)::bigint);
end
$$;

create or replace function invoices.invoice_status(ref text) returns jsonb
language sql stable security definer
set search_path = pg_catalog
as $$
  select invoices_internal.authorize('invoice_status');  -- first: the caller's scope
  select jsonb_build_object(
           'id', r.id, 'invoice_number', r.invoice_number, 'status', r.status,
           'total', r.total::text, 'amount_paid', r.amount_paid::text,
           'amount_due', r.amount_due::text, 'currency', r.currency,
           'asset', r.asset, 'asset_amount', r.asset_amount::text, 'asset_paid', r.asset_paid::text,
           'address', r.address,
           'expires_at', r.expires_at, 'overpaid', r.overpaid, 'paid_late', r.paid_late,
           -- the latest payment's transaction (public on its chain anyway): the pay button's onPayment
           'latest_txid', (select p.txid from invoices_internal.payments p
                            where p.merchant_id = r.merchant_id and p.invoice_id = r.id and p.status <> 'reverted'
                            order by p.id desc limit 1))
    from invoices_internal.document_invoice(ref) d
    join invoices_internal.invoice_rows r on r.merchant_id = d.merchant_id and r.id = d.id
$$;
comment on function invoices.widget_js() is
  'The pay button''s script, served as <public_base_url>/widget.js: <script src=".../widget.js" data-invoice="<slug or hosted URL>" data-theme="light|dark|minimal|kaspa"></script>, or LivingInvoices.createButton({invoice, container, theme, text, onPayment, onStatus}). It talks only to the host it came from.';
revoke execute on function invoices.widget_js() from public;
grant execute on function invoices.widget_js() to invoices_admin;
grant execute on function invoices.widget_js() to invoices_api;

-- The checkout names the network and says where the payment is.
create or replace function invoices.invoice_status(ref text) returns jsonb
language sql stable security definer
set search_path = pg_catalog
as $$
  select invoices_internal.authorize('invoice_status');  -- first: the caller's scope
  select jsonb_build_object(
           'id', r.id, 'invoice_number', r.invoice_number, 'status', r.status,
           'total', r.total::text, 'amount_paid', r.amount_paid::text,
           'amount_due', r.amount_due::text, 'currency', r.currency,
           'asset', r.asset, 'asset_amount', r.asset_amount::text, 'asset_paid', r.asset_paid::text,
           'address', r.address,
           'expires_at', r.expires_at, 'overpaid', r.overpaid, 'paid_late', r.paid_late,
           -- the latest payment's transaction (public on its chain anyway): the pay button's onPayment
           'latest_txid', (select p.txid from invoices_internal.payments p
                            where p.merchant_id = r.merchant_id and p.invoice_id = r.id and p.status <> 'reverted'
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
                        where p.merchant_id = r.merchant_id and p.invoice_id = r.id and p.status <> 'reverted'
                       having count(*) > 0))
    from invoices_internal.document_invoice(ref) d
    join invoices_internal.invoice_rows r on r.merchant_id = d.merchant_id and r.id = d.id
$$;

create or replace function invoices_internal.invoice_document(mid uuid, invoice_id uuid) returns jsonb
language plpgsql stable
as $$
begin
  return (
    select invoices_internal.invoice_object(mid, invoice_document.invoice_id) || jsonb_build_object(
             'payment_chain', (
               select jsonb_build_object('family', c.family, 'chain_id', c.chain_id, 'network', c.network,
                                         'token_contract', c.tokens -> i.asset ->> 'contract',
                                         'token_decimals', (c.tokens -> i.asset ->> 'decimals')::int)
                 from invoices_internal.chains c
                where i.asset = any (c.assets)
                order by c.active desc, c.created_at
                limit 1))
      from invoices_internal.invoices i
     where i.merchant_id = mid and i.id = invoice_document.invoice_id);
end
$$;

-- The checkout's "Get a new quote" (issue 22).
alter table invoices_internal.merchants add column public_requote boolean not null default false;
insert into invoices_internal.access_rules (kind, object, scope) values ('function', 'requote_expired', 'anonymous'), ('function', 'allow_public_requote', 'admin');
create or replace function invoices.requote_expired(slug text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('requote_expired');  -- first: anyone, by slug
  caller text := current_setting('invoices.merchant_id', true);
  inv record;
  result jsonb;
begin
  select i.merchant_id, i.id, m.public_requote into inv
    from invoices_internal.invoices i join invoices_internal.merchants m on m.id = i.merchant_id
   where i.slug = requote_expired.slug and i.status <> 'draft';
  if not found then
    perform invoices_internal.raise('P0002', 'invoice not found', null, 'give the slug of the hosted page');
  end if;
  if not inv.public_requote then
    perform invoices_internal.raise('42501', 'the merchant does not let payers ask for a new quote', null,
      'ask the merchant for a new invoice');
  end if;
  perform set_config('invoices.merchant_id', inv.merchant_id::text, true);
  result := invoices.requote_invoice(inv.id::text);
  perform set_config('invoices.merchant_id', coalesce(caller, ''), true);
  return jsonb_build_object('slug', requote_expired.slug, 'status', result->'status',
                            'asset', result->'asset', 'asset_amount', result->'asset_amount',
                            'expires_at', result->'expires_at');
end
$$;

create or replace function invoices.allow_public_requote(allowed boolean) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('allow_public_requote');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
begin
  update invoices_internal.merchants set public_requote = coalesce(allowed, false) where id = mid;
  return jsonb_build_object('merchant_id', mid, 'public_requote', coalesce(allowed, false));
end
$$;

create or replace function invoices_internal.invoice_document(mid uuid, invoice_id uuid) returns jsonb
language plpgsql stable
as $$
begin
  return (
    select invoices_internal.invoice_object(mid, invoice_document.invoice_id) || jsonb_build_object(
             'public_requote', (select m.public_requote from invoices_internal.merchants m where m.id = mid),
             'payment_chain', (
               select jsonb_build_object('family', c.family, 'chain_id', c.chain_id, 'network', c.network,
                                         'token_contract', c.tokens -> i.asset ->> 'contract',
                                         'token_decimals', (c.tokens -> i.asset ->> 'decimals')::int)
                 from invoices_internal.chains c
                where i.asset = any (c.assets)
                order by c.active desc, c.created_at
                limit 1))
      from invoices_internal.invoices i
     where i.merchant_id = mid and i.id = invoice_document.invoice_id);
end
$$;
comment on function invoices.requote_expired(text) is
  'The checkout''s "Get a new quote": requotes an expired, unpaid invoice by its slug, without a key, when its merchant allows it (allow_public_requote). Returns {slug, status, asset, asset_amount, expires_at}.';
comment on function invoices.allow_public_requote(boolean) is
  'Whether payers of the current merchant may ask for a new quote of an expired, unpaid invoice from its hosted page (requote_expired). Off by default.';
revoke execute on function invoices.requote_expired(text) from public;
grant execute on function invoices.requote_expired(text) to invoices_admin;
grant execute on function invoices.requote_expired(text) to invoices_api;
revoke execute on function invoices.allow_public_requote(boolean) from public;
grant execute on function invoices.allow_public_requote(boolean) to invoices_admin;
grant execute on function invoices.allow_public_requote(boolean) to invoices_api;

-- The pay button follows todays rate for an expired invoice.
create or replace function invoices.invoice_status(ref text) returns jsonb
language sql stable security definer
set search_path = pg_catalog
as $$
  select invoices_internal.authorize('invoice_status');  -- first: the caller's scope
  select jsonb_build_object(
           'id', r.id, 'invoice_number', r.invoice_number, 'status', r.status,
           'total', r.total::text, 'amount_paid', r.amount_paid::text,
           'amount_due', r.amount_due::text, 'currency', r.currency,
           'asset', r.asset, 'asset_amount', r.asset_amount::text, 'asset_paid', r.asset_paid::text,
           'address', r.address,
           'expires_at', r.expires_at, 'overpaid', r.overpaid, 'paid_late', r.paid_late,
           -- the latest payment's transaction (public on its chain anyway): the pay button's onPayment
           'latest_txid', (select p.txid from invoices_internal.payments p
                            where p.merchant_id = r.merchant_id and p.invoice_id = r.id and p.status <> 'reverted'
                            order by p.id desc limit 1),
           -- an expired quote no longer holds: what the invoice would cost at today's median rate
           -- (the pay button follows it until a new quote is locked)
           'estimate', case when r.status = 'expired' and r.asset is not null and r.currency <> r.asset then (
                         select invoices_internal.quote_asset_amount(r.total, x.rate, coalesce(r.markup_percent, 0), c.exponent)::text
                           from invoices_internal.current_rate(r.asset, r.currency) x
                           join invoices_internal.currencies c on c.code = r.asset
                          where x.rate is not null) end,
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
                        where p.merchant_id = r.merchant_id and p.invoice_id = r.id and p.status <> 'reverted'
                       having count(*) > 0))
    from invoices_internal.document_invoice(ref) d
    join invoices_internal.invoice_rows r on r.merchant_id = d.merchant_id and r.id = d.id
$$;

-- Scaling out on Citus (issue 23): row-level security without subqueries, the views' merchant
-- filter evaluated in the caller's session, invoices found by slug through a routing table.
create function invoices_internal.is_admin(caller name) returns boolean
language sql stable security definer
set search_path = pg_catalog
as $$
  select pg_has_role(session_user, caller, 'MEMBER')
         and (coalesce((select rolsuper from pg_roles where rolname = caller), false)
              or pg_has_role(caller, 'invoices_admin', 'MEMBER'))
$$;

create function invoices_internal.may_see(merchant uuid) returns boolean
language sql stable parallel safe
begin atomic
  select merchant = invoices_internal.current_merchant_id()
      or (invoices_internal.current_merchant_id() is null and invoices_internal.is_admin(current_user));
end;

revoke execute on function invoices_internal.is_admin(name), invoices_internal.may_see(uuid) from public;

grant execute on function invoices_internal.is_admin(name), invoices_internal.may_see(uuid) to public;

create table invoices_internal.session_scope (
  one boolean primary key default true check (one)
);

insert into invoices_internal.session_scope default values;

comment on table invoices_internal.session_scope is
  'One row that stays on the coordinator: the views'' merchant filter reads it so that, on Citus, the filter is evaluated in the caller''s session and only its answer is sent to the worker nodes.';

create function invoices_internal.readable_merchants(object text, caller name) returns uuid[]
language sql stable
begin atomic
  select case when invoices_internal.may_read(object, caller) then invoices_internal.visible_merchants() end;
end;

revoke execute on function invoices_internal.readable_merchants(text, name) from public;

grant execute on function invoices_internal.readable_merchants(text, name) to public;

create table invoices_internal.invoice_slugs (
  slug        text primary key,
  merchant_id uuid not null,
  invoice_id  uuid not null
);

insert into invoices_internal.invoice_slugs (slug, merchant_id, invoice_id)
select slug, merchant_id, id from invoices_internal.invoices;

revoke all on invoices_internal.invoice_slugs, invoices_internal.session_scope from public;

alter table invoices_internal.invoice_slugs enable row level security;

select pg_catalog.pg_extension_config_dump('invoices_internal.invoice_slugs', '');

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

revoke execute on function invoices_internal.invoice_by_slug(text) from public;

do $$
declare
  t regclass;
begin
  for t in select polrelid::regclass from pg_policy where polname = 'merchant_scope' loop
    execute format('drop policy merchant_scope on %s', t);
  end loop;
end
$$;

create policy merchant_scope on invoices_internal.merchants
  using (invoices_internal.may_see(id));

do $$
declare
  t regclass;
begin
  for t in select c.oid::regclass
             from pg_class c
             join pg_attribute a on a.attrelid = c.oid and a.attname = 'merchant_id' and not a.attisdropped
            where c.relnamespace = 'invoices_internal'::regnamespace and c.relkind = 'r'
            order by c.relname
  loop
    execute format('create policy merchant_scope on %s using (invoices_internal.may_see(merchant_id))', t);
  end loop;
end
$$;

create or replace function invoices_internal.invoice_before_update() returns trigger
language plpgsql
as $$
declare
  t text[];
begin
  if new.id <> old.id or new.merchant_id <> old.merchant_id or new.invoice_number <> old.invoice_number
     or new.number_seq <> old.number_seq or new.slug <> old.slug or new.created_at <> old.created_at then
    raise exception 'invoice % cannot change its identity (id, merchant, number, slug)', old.invoice_number
      using errcode = '23514';
  end if;
  if old.status <> 'draft' and (new.currency, new.subtotal, new.discount_amount, new.tax_rate,
                                new.tax_amount, new.total)
      is distinct from (old.currency, old.subtotal, old.discount_amount, old.tax_rate,
                        old.tax_amount, old.total) then
    raise exception 'invoice % is %: its amounts are locked', old.invoice_number, old.status
      using errcode = '23514', hint = 'only draft invoices can change their amounts';
  end if;
  new.updated_at := now();
  if new.status is distinct from old.status then
    t := invoices_internal.check_transition(old.status, new.status);
    case t[1]
      when 'finalized_at' then new.finalized_at := now();
      when 'partially_paid_at' then new.partially_paid_at := now();
      when 'paid_at' then new.paid_at := now();
      when 'confirmed_at' then new.confirmed_at := now();
      when 'expired_at' then new.expired_at := now();
      when 'overdue_at' then new.overdue_at := now();
      when 'cancelled_at' then new.cancelled_at := now();
      else null;
    end case;
    -- the audit row and the outbox, in the same transaction (one statement)
    perform invoices_internal.emit_events(row(new.*)::invoices_internal.invoices, array[t[2]], null, array[old.status], array[new.status]);
    -- expiry, cancellation and confirmation release the deposit address after its pause (the
    -- invoice's pause_minutes, else invoices.address_pause_minutes: a day), so a late payment
    -- to it still finds its invoice instead of the address's next holder
    -- (the invoice keeps showing deposit_address; address_id goes, so an invoice revived by
    -- a late payment or a reorg never claims an address the carousel has handed on)
    if new.status in ('expired', 'cancelled', 'confirmed') and old.address_id is not null then
      perform invoices_internal.release_address(new.merchant_id, new.id, old.address_id,
        coalesce(new.pause_minutes, current_setting('invoices.address_pause_minutes')::int));
      new.address_id := null;
    end if;
  end if;
  perform invoices_internal.check_invoice_row(row(new.*)::invoices_internal.invoices);
  return new;
end
$$;

create or replace function invoices_internal.invoice_before_insert() returns trigger
language plpgsql
as $$
begin
  if new.status = 'pending' then
    new.finalized_at := now();   -- draft -> pending, always legal
  elsif new.status <> 'draft' then
    raise exception 'a new invoice starts as draft, not %', new.status
      using errcode = '23514', hint = 'create it, then call invoices.finalize_invoice';
  end if;
  perform invoices_internal.check_invoice_row(row(new.*)::invoices_internal.invoices);
  if new.status = 'pending' then
    perform invoices_internal.emit_events(row(new.*)::invoices_internal.invoices, '{invoice.created,invoice.finalized}', null,
                                          '{NULL,draft}', '{draft,pending}');
  else
    perform invoices_internal.emit_events(row(new.*)::invoices_internal.invoices, '{invoice.created}', null, '{NULL}', '{draft}');
  end if;
  return new;
end
$$;

create or replace function invoices_internal.document_invoice(ref text, out merchant_id uuid, out id uuid)
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

create or replace function invoices.hosted_invoice(slug text) returns invoices."text/html"
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('hosted_invoice');  -- first: the caller's scope
  i invoices_internal.invoices;
begin
  i := invoices_internal.invoice_by_slug(btrim(coalesce(hosted_invoice.slug, '')));
  if i.finalized_at is null then
    perform invoices_internal.raise('P0002', format('invoice "%s" not found', hosted_invoice.slug), null,
      'the hosted page shows a finalized invoice by the slug in its URL');
  end if;
  -- framed only where invoices.checkout_frame_ancestors allows (the pay button's modal)
  perform set_config('response.headers', jsonb_build_array(jsonb_build_object('Cache-Control', 'no-store'),
    jsonb_build_object('Content-Security-Policy', 'frame-ancestors '
      || coalesce(nullif(current_setting('invoices.checkout_frame_ancestors', true), ''), '''none''')),
    jsonb_build_object('Referrer-Policy', 'no-referrer'))::text, true);
  return invoices_internal.render_hosted_page(
    invoices_internal.invoice_document(i.merchant_id, i.id),
    '../rpc/',
    '../rpc/invoice_pdf?ref=' || i.slug,
    (extract(epoch from current_setting('invoices.page_poll_ms')::interval) * 1000)::int,
    (extract(epoch from clock_timestamp()) * 1000)::bigint);
end
$$;

create or replace function invoices.invoice_viewed(slug text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('invoice_viewed');  -- first: the caller's scope
  i invoices_internal.invoices;
  changed invoices_internal.invoices;
begin
  -- found by slug (any merchant), then changed by its key
  i := invoices_internal.invoice_by_slug(btrim(coalesce(invoice_viewed.slug, '')));
  if i.finalized_at is null then
    perform invoices_internal.raise('P0002', format('invoice "%s" not found', invoice_viewed.slug), null,
      'pass the slug of a finalized invoice (from its hosted URL)');
  end if;
  if i.viewed_at is null then
    update invoices_internal.invoices v set viewed_at = now()
     where v.merchant_id = i.merchant_id and v.id = i.id and v.viewed_at is null
    returning * into changed;
    if found then
      perform invoices_internal.emit_events(changed, '{invoice.viewed}');
      return jsonb_build_object('slug', changed.slug, 'viewed_at', changed.viewed_at, 'first_view', true);
    end if;
    -- viewed by a concurrent call meanwhile
    select * into i from invoices_internal.invoices v where v.merchant_id = i.merchant_id and v.id = i.id;
  end if;
  return jsonb_build_object('slug', i.slug, 'viewed_at', i.viewed_at, 'first_view', false);
end
$$;

create or replace function invoices.requote_expired(slug text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('requote_expired');  -- first: anyone, by slug
  caller text := current_setting('invoices.merchant_id', true);
  inv invoices_internal.invoices := invoices_internal.invoice_by_slug(requote_expired.slug);
  allowed boolean;
  result jsonb;
begin
  if inv.id is null or inv.status = 'draft' then
    perform invoices_internal.raise('P0002', 'invoice not found', null, 'give the slug of the hosted page');
  end if;
  select m.public_requote into allowed from invoices_internal.merchants m where m.id = inv.merchant_id;
  if not allowed then
    perform invoices_internal.raise('42501', 'the merchant does not let payers ask for a new quote', null,
      'ask the merchant for a new invoice');
  end if;
  perform set_config('invoices.merchant_id', inv.merchant_id::text, true);
  result := invoices.requote_invoice(inv.id::text);
  perform set_config('invoices.merchant_id', coalesce(caller, ''), true);
  return jsonb_build_object('slug', requote_expired.slug, 'status', result->'status',
                            'asset', result->'asset', 'asset_amount', result->'asset_amount',
                            'expires_at', result->'expires_at');
end
$$;

create or replace view invoices_internal.distribution_plan as
select p.table_name, p.kind, p.distribution_column, p.colocate_with, p.position
  from (values
    -- reference: small, global, read by joins with tenant tables on every node
    ('invoices_internal.currencies'::text,  'reference'::text, null::text, null::text, 10),
    ('invoices_internal.chains',            'reference', null, null, 20),
    ('invoices_internal.chain_blocks',      'reference', null, null, 30),
    ('invoices_internal.rate_sources',      'reference', null, null, 40),
    ('invoices_internal.rate_observations', 'reference', null, null, 50),
    ('invoices_internal.server_secrets',    'reference', null, null, 60),
    ('invoices_internal.access_rules',      'reference', null, null, 65),
    -- tenant: the colocation anchor, then every table carrying merchant_id
    ('invoices_internal.merchants',           'tenant', 'id',          null, 100),
    ('invoices_internal.invoices',            'tenant', 'merchant_id', 'invoices_internal.merchants', 110),
    ('invoices_internal.invoice_lines',       'tenant', 'merchant_id', 'invoices_internal.merchants', 120),
    ('invoices_internal.quotes',              'tenant', 'merchant_id', 'invoices_internal.merchants', 130),
    ('invoices_internal.audit_log',           'tenant', 'merchant_id', 'invoices_internal.merchants', 140),
    ('invoices_internal.api_keys',            'tenant', 'merchant_id', 'invoices_internal.merchants', 150),
    ('invoices_internal.idempotency_keys',    'tenant', 'merchant_id', 'invoices_internal.merchants', 160),
    ('invoices_internal.wallets',             'tenant', 'merchant_id', 'invoices_internal.merchants', 170),
    ('invoices_internal.addresses',           'tenant', 'merchant_id', 'invoices_internal.merchants', 180),
    ('invoices_internal.address_assignments', 'tenant', 'merchant_id', 'invoices_internal.merchants', 190),
    ('invoices_internal.events',              'tenant', 'merchant_id', 'invoices_internal.merchants', 200),
    ('invoices_internal.webhook_endpoints',   'tenant', 'merchant_id', 'invoices_internal.merchants', 210),
    ('invoices_internal.webhook_deliveries',  'tenant', 'merchant_id', 'invoices_internal.merchants', 220),
    ('invoices_internal.webhook_attempts',    'tenant', 'merchant_id', 'invoices_internal.merchants', 230),
    ('invoices_internal.payments',            'tenant', 'merchant_id', 'invoices_internal.merchants', 240),
    ('invoices_internal.payment_links',       'tenant', 'merchant_id', 'invoices_internal.merchants', 250),
    ('invoices_internal.emails',              'tenant', 'merchant_id', 'invoices_internal.merchants', 260),
    -- routing: each in a colocation group of its own (colocate_with null = 'none')
    ('invoices_internal.invoice_slugs',       'routing', 'slug',     null, 305),
    ('invoices_internal.payment_link_slugs',  'routing', 'slug',     null, 310),
    ('invoices_internal.api_key_hashes',      'routing', 'key_hash', null, 320),
    ('invoices_internal.wallet_keys',         'routing', 'first_address', null, 330),
    -- local: written by the coordinator's background worker several times a second, read
    -- only by invoices.worker_status; replicating it to every node would buy nothing
    ('invoices_internal.worker_tasks',        'local', null, null, 900),
    -- local: the views' merchant filter reads it, so that filter runs in the caller's session
    ('invoices_internal.session_scope',       'local', null, null, 910)
  ) as p(table_name, kind, distribution_column, colocate_with, position);

create or replace view invoices.invoice_lines with (security_barrier) as
select l.merchant_id, l.invoice_id, i.invoice_number, l.position, l.description,
       l.quantity, l.unit_price, l.amount, i.currency
  from invoices_internal.invoice_lines l
  join invoices_internal.invoices i on i.merchant_id = l.merchant_id and i.id = l.invoice_id
 where l.merchant_id = any ((select invoices_internal.readable_merchants('invoice_lines', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices.audit_log with (security_barrier) as
select a.merchant_id, a.id, a.invoice_id, i.invoice_number, a.from_status, a.to_status,
       a.event, a.actor, a.at
  from invoices_internal.audit_log a
  join invoices_internal.invoices i on i.merchant_id = a.merchant_id and i.id = a.invoice_id
 where a.merchant_id = any ((select invoices_internal.readable_merchants('audit_log', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices.api_keys with (security_barrier) as
select k.merchant_id, k.id, k.name, k.prefix, k.scopes, k.rate_limit_per_minute,
       k.created_at, k.created_by, k.revoked_at, k.revoked_at is null as active,
       greatest(k.last_used_at, to_timestamp(u.last_used_unix)) as last_used_at
  from invoices_internal.api_keys k
  left join invoices_internal.api_key_usage() u on u.key_id = k.id
 where k.merchant_id = any ((select invoices_internal.readable_merchants('api_keys', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices.quotes with (security_barrier) as
select q.merchant_id, q.invoice_id, i.invoice_number, q.id, q.asset, q.currency, q.amount, q.rate,
       q.rate_sources, q.markup_percent, q.asset_amount, q.created_at, q.expires_at,
       q.id = (select q2.id from invoices_internal.quotes q2
                where q2.merchant_id = q.merchant_id and q2.invoice_id = q.invoice_id
                order by q2.created_at desc limit 1) as current
  from invoices_internal.quotes q
  join invoices_internal.invoices i on i.merchant_id = q.merchant_id and i.id = q.invoice_id
 where q.merchant_id = any ((select invoices_internal.readable_merchants('quotes', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices.wallets with (security_barrier) as
select w.merchant_id, w.id, w.asset, w.network, w.xpub, w.xpub is null as bring_your_own,
       case when w.xpub is null then
         (select a.address from invoices_internal.addresses a
           where a.merchant_id = w.merchant_id and a.wallet_id = w.id limit 1) end as address,
       w.gap_limit, w.next_index as derived_addresses, w.active, w.created_at,
       (select count(*) from invoices_internal.addresses a
         where a.merchant_id = w.merchant_id and a.wallet_id = w.id and a.invoice_id is not null) as addresses_in_use
  from invoices_internal.wallets w
 where w.merchant_id = any ((select invoices_internal.readable_merchants('wallets', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices.addresses with (security_barrier) as
select a.merchant_id, a.wallet_id, w.asset, w.network, a.id, a.address, a.derivation_index,
       case when a.invoice_id is not null then 'assigned'
            when a.available_at > now() then 'paused'
            else 'free' end as state,
       i.invoice_number, a.invoice_id, a.last_invoice_id, a.available_at, a.times_assigned,
       a.first_paid_at, a.created_at
  from invoices_internal.addresses a
  join invoices_internal.wallets w on w.merchant_id = a.merchant_id and w.id = a.wallet_id
  left join invoices_internal.invoices i on i.merchant_id = a.merchant_id and i.id = a.invoice_id
 where a.merchant_id = any ((select invoices_internal.readable_merchants('addresses', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices.events with (security_barrier) as
select v.merchant_id, v.id, v.event, v.invoice_id, v.data, v.created_at
  from invoices_internal.events v
 where v.merchant_id = any ((select invoices_internal.readable_merchants('events', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices.webhook_endpoints with (security_barrier) as
select e.merchant_id, e.id, e.url, e.events, e.description, e.active, e.created_at, e.deleted_at, e.format
  from invoices_internal.webhook_endpoints e
 where e.merchant_id = any ((select invoices_internal.readable_merchants('webhook_endpoints', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices.webhook_deliveries with (security_barrier) as
select d.merchant_id, d.id, d.event_id, v.event, d.endpoint_id, d.endpoint_id is null as invoice_callback,
       d.url, d.status, d.attempts, d.max_retries, d.next_attempt_at, d.last_status_code, d.last_error,
       d.delivered_at, d.created_at,
       (select jsonb_agg(jsonb_build_object('attempt', a.attempt, 'started_at', a.started_at,
                                            'latency_ms', a.latency_ms, 'status_code', a.status_code,
                                            'response', a.response_excerpt, 'error', a.error) order by a.attempt)
          from invoices_internal.webhook_attempts a
         where a.merchant_id = d.merchant_id and a.delivery_id = d.id) as attempt_log
  from invoices_internal.webhook_deliveries d
  join invoices_internal.events v on v.merchant_id = d.merchant_id and v.id = d.event_id
 where d.merchant_id = any ((select invoices_internal.readable_merchants('webhook_deliveries', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices.payments with (security_barrier) as
select p.merchant_id, p.id, p.invoice_id, i.invoice_number, p.chain, p.txid, p.output_index, p.address,
       p.asset, p.amount, p.amount_base, p.status,
       case when p.block_height is null or p.status = 'reverted' then 0
            else greatest(c.tip_height - p.block_height + 1, 0) end as confirmations,
       p.block_height, p.block_hash, p.late, p.detected_at, p.confirmed_at, p.reverted_at
  from invoices_internal.payments p
  join invoices_internal.chains c on c.id = p.chain
  left join invoices_internal.invoices i on i.merchant_id = p.merchant_id and i.id = p.invoice_id
 where p.merchant_id = any ((select invoices_internal.readable_merchants('payments', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices.unmatched_payments with (security_barrier) as
select u.merchant_id, u.id, u.chain, u.txid, u.output_index, u.address, u.asset, u.amount, u.status,
       u.invoice_id, u.invoice_number, u.reason, u.detected_at
  from (select p.merchant_id, p.id, p.chain, p.txid, p.output_index, p.address, p.asset, p.amount, p.status,
               p.invoice_id, i.invoice_number, p.detected_at,
               case when i.id is null then 'no_invoice'
                    when i.asset is distinct from p.asset then 'other_asset'
                    -- late: the invoice was cancelled when the payment was recorded (its
                    -- detected_at may precede a cancel that committed during the poll)
                    when i.cancelled_at <= p.detected_at or i.cancelled_at is not null and p.late then 'invoice_cancelled'
                    -- a late payment to an expired invoice pays it (paid_late): unmatched only
                    -- while the invoice stays expired
                    when p.late and i.status = 'expired' then 'invoice_expired'
                    when (select coalesce(sum(e.amount), 0) from invoices_internal.payments e
                           where e.merchant_id = p.merchant_id and e.invoice_id = p.invoice_id and e.asset = p.asset
                             and e.status <> 'reverted' and e.id < p.id)
                         >= (select q.asset_amount from invoices_internal.quotes q
                              where q.merchant_id = p.merchant_id and q.invoice_id = p.invoice_id
                              order by q.created_at desc limit 1) then 'invoice_already_paid'
               end as reason
          from invoices_internal.payments p
          left join invoices_internal.invoices i on i.merchant_id = p.merchant_id and i.id = p.invoice_id
         where p.status <> 'reverted'
           and p.merchant_id = any ((select invoices_internal.readable_merchants('unmatched_payments', current_user) from invoices_internal.session_scope)::uuid[])) u
 where u.reason is not null;

create or replace view invoices.payment_links with (security_barrier) as
select l.merchant_id, l.id, l.slug, l.title, l.description, l.amount, l.currency, l.asset, l.redirect_url,
       l.metadata, l.active, l.invoices_created, l.created_at, l.deactivated_at
  from invoices_internal.payment_links l
 where l.merchant_id = any ((select invoices_internal.readable_merchants('payment_links', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices.receivables_aging with (security_barrier) as
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

create or replace view invoices.revenue_by_month with (security_barrier) as
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

create or replace view invoices.payment_conversion with (security_barrier) as
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

create or replace view invoices.days_to_pay with (security_barrier) as
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

create or replace view invoices.open_exposure with (security_barrier) as
with open as (
  select i.merchant_id, q.asset, q.currency, q.rate as quoted_rate,
         greatest(q.asset_amount - i.asset_paid, 0) as outstanding
    from invoices_internal.invoices i
    join invoices_internal.latest_quotes q on q.merchant_id = i.merchant_id and q.invoice_id = i.id
   where i.status in ('pending', 'partial', 'overdue')
     and i.merchant_id = any ((select invoices_internal.readable_merchants('open_exposure', current_user) from invoices_internal.session_scope)::uuid[])
)
select o.merchant_id, o.asset, o.currency,
       count(*) as open_invoices,
       sum(o.outstanding) as outstanding_asset,
       round(sum(o.outstanding * coalesce(o.quoted_rate, 1)), c.exponent) as value_at_quote,
       r.rate as rate_today,
       round(sum(o.outstanding) * case when o.asset = o.currency then 1 else r.rate end, c.exponent) as value_today
  from open o
  join invoices_internal.currencies c on c.code = o.currency
  left join lateral invoices_internal.current_rate(o.asset, o.currency) r on true
 group by o.merchant_id, o.asset, o.currency, r.rate, c.exponent;

create or replace view invoices.fx_gain_loss with (security_barrier) as
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

create or replace view invoices.emails with (security_barrier) as
select e.merchant_id, e.id, e.invoice_id, i.invoice_number, e.recipient as "to", e.status, e.attempts,
       e.max_attempts, e.next_attempt_at, e.last_error, e.relay_response, e.created_at, e.sent_at
  from invoices_internal.emails e
  join invoices_internal.invoices i on i.merchant_id = e.merchant_id and i.id = e.invoice_id
 where e.merchant_id = any ((select invoices_internal.readable_merchants('emails', current_user) from invoices_internal.session_scope)::uuid[]);

-- Leases these deliveries of one merchant (locked by the caller) and returns them ready to
-- send: every statement names the merchant, so on Citus it runs on that merchant's shard.
create function invoices_internal.claim_merchant_deliveries(mid uuid, ids bigint[], lease timestamptz)
returns table (merchant_id uuid, id bigint, url text, secret text, event text, event_id uuid, body text, attempt integer,
               format text)
language plpgsql volatile
as $$
begin
  return query
  with claimed as (
    update invoices_internal.webhook_deliveries d
       set status = 'delivering', lease_until = lease
     where d.merchant_id = mid and d.id = any (ids)
    returning d.*
  )
  select c.merchant_id, c.id, c.url, coalesce(c.secret, e.secret), v.event, v.id,
         case when fmt = 'invoices' then envelope::text
              -- a seed's format (domain::seeds::webhooks), with what it prints beside the event
              else invoices_internal.webhook_body(fmt, envelope || jsonb_build_object(
                     'secret_key', case when fmt = 'apiforcrypto' then c.secret end,
                     'latest_txid', (select p.txid from invoices_internal.payments p
                                      where p.merchant_id = mid and p.invoice_id = v.invoice_id
                                        and p.status <> 'reverted' order by p.id desc limit 1),
                     'asset_amount', (select q.asset_amount::text from invoices_internal.quotes q
                                       where q.merchant_id = mid and q.invoice_id = v.invoice_id
                                       order by q.created_at desc limit 1)))::text end,
         c.attempts + 1,
         fmt
    from claimed c
    join invoices_internal.events v on v.merchant_id = mid and v.id = c.event_id
    left join invoices_internal.webhook_endpoints e on e.merchant_id = mid and e.id = c.endpoint_id
    cross join lateral (select jsonb_build_object('id', v.id, 'event', v.event,
                            'timestamp', to_char(v.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                            'data', v.data) as envelope,
                               -- an endpoint's format, or for an invoice's own callback the one
                               -- its creator asked for (apiforcrypto's invoices)
                               case when c.endpoint_id is null
                                    then case when v.data->'metadata'->>'callback_format' in ('apiforcrypto', 'kibble')
                                              then v.data->'metadata'->>'callback_format' else 'invoices' end
                                    else coalesce(e.format, 'invoices') end as fmt) x;
end
$$;

revoke execute on function invoices_internal.claim_merchant_deliveries(uuid, bigint[], timestamptz) from public;

-- Sets a setting of the extension for the rest of the transaction with SET LOCAL, which
-- Citus passes on to the worker nodes a statement touches (citus.propagate_set_commands =
-- 'local'); set_config() would stay on this node. Callers name the setting themselves.
create function invoices_internal.set_local(setting text, value text) returns void
language plpgsql volatile
as $$
begin
  if setting not in ('invoices.merchant_id', 'invoices.api_key_id', 'invoices.actor') then
    raise exception 'set_local: % is not a setting it passes on', setting using errcode = '22023';
  end if;
  execute format('set local %s = %L', setting, coalesce(value, ''));
end
$$;

revoke execute on function invoices_internal.set_local(text, text) from public;

-- Is this an HTTP request without an API key? (On Citus: the API role's public doors, policy
-- public_doors, read what the public views show; the pre-request check passes the setting on.)
create function invoices_internal.anonymous_request() returns boolean
language sql stable parallel safe
begin atomic
  select invoices_internal.current_merchant_id() is null
     and current_setting('invoices.api_key_scopes', true) = 'anonymous';
end;

revoke execute on function invoices_internal.anonymous_request() from public;

grant execute on function invoices_internal.anonymous_request() to public;

-- The invoice row carries what its object shows: its lines and its latest quote's amount and rate.
alter table invoices_internal.invoices
  add column lines jsonb not null default '[]'::jsonb,
  add column asset_amount numeric,
  add column rate numeric;

set local session_replication_role = replica;

update invoices_internal.invoices i
   set lines = coalesce((select jsonb_agg(jsonb_build_object(
                                 'description', l.description, 'quantity', l.quantity::text,
                                 'unit_price', l.unit_price::text, 'amount', l.amount::text) order by l.position)
                           from invoices_internal.invoice_lines l
                          where l.merchant_id = i.merchant_id and l.invoice_id = i.id), '[]'::jsonb),
       asset_amount = q.asset_amount,
       rate = q.rate
  from (select i2.merchant_id, i2.id, q.asset_amount, q.rate
          from invoices_internal.invoices i2
          left join lateral (select q.asset_amount, q.rate from invoices_internal.quotes q
                              where q.merchant_id = i2.merchant_id and q.invoice_id = i2.id
                              order by q.created_at desc limit 1) q on true) q
 where q.merchant_id = i.merchant_id and q.id = i.id;

set local session_replication_role = origin;

create or replace view invoices_internal.invoice_rows as
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

create or replace view invoices.invoices with (security_barrier) as
select r.*
  from invoices_internal.invoice_rows r
 where r.merchant_id = any ((select invoices_internal.readable_merchants('invoices', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace function invoices_internal.lock_quote(mid uuid, inv_id uuid) returns void
language plpgsql volatile
as $$
declare
  inv invoices_internal.invoices;
  quote_rate numeric;
  sources text[] := '{}';
  asset_exponent int;
  amount numeric;
begin
  select * into inv from invoices_internal.invoices where merchant_id = mid and id = inv_id;
  if inv.asset is null then
    return;
  end if;
  select exponent into asset_exponent from invoices_internal.currencies where code = inv.asset;
  if inv.asset <> inv.currency then
    select c.rate, c.sources into quote_rate, sources from invoices_internal.current_rate(inv.asset, inv.currency) c;
    if quote_rate is null then
      perform invoices_internal.raise('55000',
        format('no fresh %s/%s rate: invoice %s cannot be quoted', inv.asset, inv.currency, inv.invoice_number),
        jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
          'field', 'asset', 'message', format('no rate for %s in %s younger than %s', inv.asset, inv.currency,
                                             current_setting('invoices.rate_max_age_seconds')))))::text,
        'set one with invoices.set_rate(asset, currency, rate) or add a rate source; the invoice stays a draft');
    end if;
  end if;
  insert into invoices_internal.quotes (merchant_id, invoice_id, asset, currency, amount, rate, rate_sources,
                                        markup_percent, asset_amount, expires_at)
  values (mid, inv_id, inv.asset, inv.currency, inv.total, quote_rate, sources,
          coalesce(inv.markup_percent, 0),
          invoices_internal.quote_asset_amount(inv.total, quote_rate, coalesce(inv.markup_percent, 0), asset_exponent),
          now() + make_interval(mins => inv.expiry_minutes))
  returning quotes.asset_amount into amount;
  -- the invoice shows its latest quote (invoice_rows reads the row alone)
  update invoices_internal.invoices
     set expires_at = now() + make_interval(mins => inv.expiry_minutes), asset_amount = amount, rate = quote_rate
   where merchant_id = mid and id = inv_id;
end
$$;

create or replace function invoices.invoice_status(ref text) returns jsonb
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

create or replace function invoices_internal.claim_merchant_deliveries(mid uuid, ids bigint[], lease timestamptz)
returns table (merchant_id uuid, id bigint, url text, secret text, event text, event_id uuid, body text, attempt integer,
               format text)
language plpgsql volatile
as $$
begin
  update invoices_internal.webhook_deliveries d
     set status = 'delivering', lease_until = lease
   where d.merchant_id = mid and d.id = any (ids);
  return query
  select c.merchant_id, c.id, c.url, coalesce(c.secret, e.secret), v.event, v.id,
         case when fmt = 'invoices' then envelope::text
              -- a seed's format (domain::seeds::webhooks), with what it prints beside the event
              else invoices_internal.webhook_body(fmt, envelope || jsonb_build_object(
                     'secret_key', case when fmt = 'apiforcrypto' then c.secret end,
                     'latest_txid', (select p.txid from invoices_internal.payments p
                                      where p.merchant_id = mid and p.invoice_id = v.invoice_id
                                        and p.status <> 'reverted' order by p.id desc limit 1),
                     'asset_amount', (select q.asset_amount::text from invoices_internal.quotes q
                                       where q.merchant_id = mid and q.invoice_id = v.invoice_id
                                       order by q.created_at desc limit 1)))::text end,
         c.attempts + 1,
         fmt
    from invoices_internal.webhook_deliveries c
    join invoices_internal.events v on v.merchant_id = mid and v.id = c.event_id
    left join invoices_internal.webhook_endpoints e on e.merchant_id = mid and e.id = c.endpoint_id
    cross join lateral (select jsonb_build_object('id', v.id, 'event', v.event,
                            'timestamp', to_char(v.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                            'data', v.data) as envelope,
                               -- an endpoint's format, or for an invoice's own callback the one
                               -- its creator asked for (apiforcrypto's invoices)
                               case when c.endpoint_id is null
                                    then case when v.data->'metadata'->>'callback_format' in ('apiforcrypto', 'kibble')
                                              then v.data->'metadata'->>'callback_format' else 'invoices' end
                                    else coalesce(e.format, 'invoices') end as fmt) x
   where c.merchant_id = mid and c.id = any (ids);
end
$$;

create or replace function invoices_internal.claim_deliveries(n integer, lease_seconds integer)
returns table (merchant_id uuid, id bigint, url text, secret text, event text, event_id uuid, body text, attempt integer,
               format text)
language plpgsql volatile
as $$
declare
  lease timestamptz := now() + make_interval(secs => lease_seconds);
  g record;
  k record;
  locked bigint[];
  ended bigint[];
  inactive uuid[];
begin
  -- the n most overdue deliveries are read without locks; each merchant's are then locked with
  -- SKIP LOCKED (another worker may hold some) and leased in statements naming that merchant
  for g in select d.merchant_id as mid, array_agg(d.id) as ids
             from (select x.merchant_id, x.id from invoices_internal.webhook_deliveries x
                    where (x.status = 'pending' and x.next_attempt_at <= now())
                       or (x.status = 'delivering' and x.lease_until < now())
                    order by x.next_attempt_at
                    limit n) d
            group by d.merchant_id
  loop
    locked := '{}';
    ended := '{}';
    -- a deleted or deactivated endpoint gets nothing more: its queued deliveries end here
    inactive := array(select e.id from invoices_internal.webhook_endpoints e where e.merchant_id = g.mid and not e.active);
    -- locked by key (the due index would scan every due row), then checked again: a row that
    -- changed since the read above is locked in its latest version
    for k in select x.id, x.status, x.next_attempt_at, x.lease_until, x.endpoint_id from invoices_internal.webhook_deliveries x
              where x.merchant_id = g.mid and x.id = any (g.ids)
              order by x.id
              for update skip locked
    loop
      if (k.status = 'pending' and k.next_attempt_at <= now()) or (k.status = 'delivering' and k.lease_until < now()) then
        if k.endpoint_id = any (inactive) then
          ended := ended || k.id;
        else
          locked := locked || k.id;
        end if;
      end if;
    end loop;
    if cardinality(ended) > 0 then
      update invoices_internal.webhook_deliveries d
         set status = 'dead', lease_until = null, last_error = 'not sent: the endpoint was deleted or deactivated'
       where d.merchant_id = g.mid and d.id = any (ended);
    end if;
    return query select * from invoices_internal.claim_merchant_deliveries(g.mid, locked, lease);
  end loop;
end
$$;

create or replace function invoices_internal.record_deliveries(outcomes jsonb) returns integer
language plpgsql volatile
as $$
declare
  at_now timestamptz := now();
  -- when each retry is due if it fails now (the schedule's steps from now)
  retry_at timestamptz[] := array(select at_now + x from unnest(invoices_internal.retry_schedule()) with ordinality u(x, n) order by n);
  fallback timestamptz := at_now + interval '1 minute';
  g record;
  m integer;
  n integer := 0;
begin
  insert into invoices_internal.webhook_attempts (merchant_id, delivery_id, attempt, started_at, latency_ms,
                                                  status_code, response_excerpt, error)
  select a.merchant_id, a.id, a.attempt, timestamptz 'epoch' + a.started_unix_ms * interval '1 millisecond',
         a.latency_ms, a.status_code, a.excerpt, a.error
    from jsonb_to_recordset(outcomes) as a(merchant_id uuid, id bigint, attempt integer, started_unix_ms bigint,
                                           latency_ms integer, status_code integer, excerpt text, error text)
  on conflict do nothing;
  -- one UPDATE per merchant (on Citus: routed to its shard); times are computed here, not in
  -- the statement (Citus refuses a mutable function inside CASE: format() and now() are)
  for g in select distinct x.merchant_id as mid from jsonb_to_recordset(outcomes) as x(merchant_id uuid)
  loop
    update invoices_internal.webhook_deliveries d
       set status = case when o.ok then 'delivered' when o.attempt > d.max_retries then 'dead' else 'pending' end,
           attempts = o.attempt,
           lease_until = null,
           last_status_code = o.status_code,
           last_error = case when o.ok then null else coalesce(o.error, 'HTTP ' || o.status_code::text) end,
           delivered_at = case when o.ok then at_now else d.delivered_at end,
           next_attempt_at = case when o.ok or o.attempt > d.max_retries then d.next_attempt_at
                                  else coalesce(retry_at[least(o.attempt, cardinality(retry_at))], fallback) end
      from (select x.*, x.error is null and coalesce(x.status_code between 200 and 299, false) as ok
              from jsonb_to_recordset(outcomes) as x(merchant_id uuid, id bigint, attempt integer,
                                                     status_code integer, error text)
             where x.merchant_id = g.mid) o
     where d.merchant_id = g.mid and d.id = o.id and d.status = 'delivering';
    get diagnostics m = row_count;
    n := n + m;
  end loop;
  return n;
end
$$;

create or replace function invoices.act_as(merchant_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('act_as');  -- first: the caller's scope
  m invoices_internal.merchants;
begin
  if act_as.merchant_id is null then
    perform set_config('invoices.merchant_id', '', false);
    perform invoices_internal.set_local('invoices.merchant_id', '');
    return null;
  end if;
  select * into m from invoices_internal.merchants where id = act_as.merchant_id;
  if not found then
    raise exception 'merchant % not found', act_as.merchant_id
      using errcode = 'P0002', hint = 'list merchants with: select id, name from invoices_internal.merchants';
  end if;
  perform set_config('invoices.merchant_id', m.id::text, false);
  -- (on Citus, inside BEGIN … COMMIT the workers learn it too: row-level security there)
  perform invoices_internal.set_local('invoices.merchant_id', m.id::text);
  return jsonb_build_object('id', m.id, 'name', m.name);
end
$$;

create or replace function invoices_internal.admin_merchant_ids(caller name) returns uuid[]
language plpgsql stable security definer
set search_path = pg_catalog
as $$
begin
  if not invoices_internal.is_admin(caller) then
    return '{}'::uuid[];
  end if;
  return (select coalesce(array_agg(id), '{}') from invoices_internal.merchants);
end
$$;

create or replace function invoices_internal.current_rate(asset text, currency text, out rate numeric, out sources text[])
language plpgsql stable
as $$
begin
  select invoices_internal.median_rate(array_agg(r.rate)), array_agg(r.source order by r.source)
    into current_rate.rate, current_rate.sources
    from invoices.rates r
   where r.asset = current_rate.asset and r.currency = current_rate.currency and r.fresh;
end
$$;

create or replace function invoices_internal.email_object(e invoices_internal.emails) returns jsonb
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

create or replace function invoices_internal.seed_afc_chain(chain text) returns jsonb
language plpgsql stable
as $$
begin
  return (select coalesce((select jsonb_build_object('id', c.id, 'tokens', c.tokens)
                       from invoices_internal.chains c where c.id = chain), jsonb_build_object('id', chain, 'tokens', '{}'::jsonb)));
end
$$;

create or replace function invoices_internal.seed_afc_payments(mid uuid, inv_id uuid) returns jsonb
language plpgsql stable
as $$
begin
  return (select coalesce(jsonb_agg(jsonb_build_object('txid', p.txid, 'status', p.status, 'amount', p.amount::text)
                              order by p.id), '[]')
      from invoices_internal.payments p where p.merchant_id = mid and p.invoice_id = inv_id);
end
$$;

create or replace view invoices.public_invoices as
select r.id, r.slug, r.invoice_number, r.status, r.currency,
       r.subtotal, r.tax_rate, r.tax_amount, r.discount_amount, r.total, r.amount_paid, r.amount_due,
       r.lines, r.merchant ->> 'name' as merchant_name, r.issue_date, r.due_date, r.notes,
       r.hosted_url, r.pdf_url, r.asset, r.asset_amount, r.rate, r.address, r.expires_at,
       r.confirmations, r.overpaid, r.paid_late,
       r.created_at, r.finalized_at, r.partially_paid_at, r.paid_at, r.confirmed_at,
       r.expired_at, r.overdue_at, r.cancelled_at
  from invoices_internal.invoice_rows r
 where r.finalized_at is not null
   and (select invoices_internal.public_lookup_allowed() and invoices_internal.may_read('public_invoices', current_user)
          from invoices_internal.session_scope);

create or replace view invoices.public_payment_links as
select l.slug, l.title, l.description, l.amount, l.currency, l.asset,
       (select m.name from invoices_internal.merchants m where m.id = l.merchant_id) as merchant_name
  from invoices_internal.payment_links l
 where l.active
   and (select invoices_internal.public_lookup_allowed() and invoices_internal.may_read('public_payment_links', current_user)
          from invoices_internal.session_scope);

create or replace function invoices_internal.set_local(setting text, value text) returns void
language plpgsql volatile
as $$
begin
  if setting not in ('invoices.merchant_id', 'invoices.api_key_id', 'invoices.api_key_scopes', 'invoices.actor') then
    raise exception 'set_local: % is not a setting it passes on', setting using errcode = '22023';
  end if;
  execute format('set local %s = %L', setting, coalesce(value, ''));
end
$$;

create or replace function invoices_internal.http_pre_request() returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  headers json := coalesce(nullif(current_setting('request.headers', true), ''), '{}')::json;
  need text := invoices_internal.required_scope(coalesce(current_setting('request.method', true), 'GET'),
                                                coalesce(current_setting('request.path', true), '/'));
  presented text := nullif(btrim(headers->>'x-api-key'), '');
  client text;
  owner record;
  presented_hash text;
  k record;
  refusal text;
  refusal_detail text;
begin
  -- The seed APIs answer a refusal in their own shape ({"error": …}): for their entry point the
  -- check runs once more below, and what it raises is kept for invoices.seed_request to answer.
  if current_setting('request.path', true) in ('/rpc/seed_request', '/rpc/seed_pdf')
     and coalesce(current_setting('invoices.gateway_checking', true), '') = '' then
    perform set_config('invoices.gateway_checking', 'on', true);
    begin
      perform invoices_internal.http_pre_request();
    exception when sqlstate 'PGRST' then
      get stacked diagnostics refusal = message_text, refusal_detail = pg_exception_detail;
      perform set_config('invoices.gateway_refusal',
        (refusal::jsonb || jsonb_build_object('status', refusal_detail::jsonb->'status',
                                              'headers', refusal_detail::jsonb->'headers'))::text, true);
    end;
    return;
  end if;
  if presented is null and headers->>'authorization' ~* '^bearer\s' then
    presented := nullif(btrim(substr(headers->>'authorization', 8)), '');
  end if;
  if presented is null then
    -- Anonymous: counted per client address. The web front sets X-Real-IP to the peer's
    -- address; PostgREST itself listens on loopback only, and calls made to it directly share
    -- the bucket "local".
    client := coalesce(nullif(btrim(split_part(headers->>'x-real-ip', ',', 1)), ''), 'local');
    perform invoices_internal.count_request(md5('anonymous ' || client)::uuid,
      current_setting('invoices.anonymous_rate_limit_per_minute')::int, 'this client address');
    -- (SET LOCAL: on Citus the public views' reads on the worker nodes need it, public_doors)
    perform invoices_internal.set_local('invoices.api_key_scopes', 'anonymous');
    if need in ('anonymous', 'public_read') then
      return;
    end if;
    perform invoices_internal.raise('28000', 'an API key is required', null,
      'send it as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;

  -- the hash first, then the lookup by it (on Citus: the one shard that holds it)
  presented_hash := encode(sha256(convert_to(presented, 'UTF8')), 'hex');
  select h.merchant_id, h.key_id into owner
    from invoices_internal.api_key_hashes h
   where h.key_hash = presented_hash;
  select id, merchant_id, scopes, rate_limit_per_minute, revoked_at into k
    from invoices_internal.api_keys
   where merchant_id = owner.merchant_id and id = owner.key_id;
  if not found or k.revoked_at is not null then
    perform invoices_internal.raise('28000',
      case when found then 'this API key was revoked' else 'invalid API key' end, null,
      'send an active key as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;
  perform invoices_internal.count_request(k.id,
    coalesce(k.rate_limit_per_minute, current_setting('invoices.rate_limit_per_minute')::int), 'this API key');

  if need = 'method_not_allowed' then
    perform invoices_internal.raise('0A000',
      format('%s %s is not allowed: the views are read-only', current_setting('request.method', true),
             current_setting('request.path', true)), null,
      'change data through the functions under /rpc/ (create_invoice, cancel_invoice, ...)');
  end if;
  -- the functions and views check the scope themselves; this is the second line
  if not invoices_internal.scope_allows(need, k.scopes) then
    perform invoices_internal.check_scope(need, k.scopes, current_setting('request.path', true));
  end if;

  -- the merchant and key with SET LOCAL: on Citus they reach the worker nodes (row-level
  -- security, the audit log's actor)
  perform invoices_internal.set_local('invoices.merchant_id', k.merchant_id::text),
          invoices_internal.set_local('invoices.api_key_id', k.id::text),
          set_config('invoices.api_key_scopes', array_to_string(k.scopes, ','), true),
          set_config('invoices.idempotency_key', coalesce(headers->>'idempotency-key', ''), true);
end
$$;

create or replace function invoices_internal.chain_poll_input(chain text) returns jsonb
language plpgsql stable
as $$
declare
  c invoices_internal.chains;
  recent jsonb;
  watched jsonb;
  rescan boolean;
begin
  -- one statement per question (on Citus: the chain's rows are on every node, the addresses
  -- and assignments on the workers, and a subquery may not mix the two)
  select * into c from invoices_internal.chains x where x.id = chain_poll_input.chain;
  if not found then
    return null;
  end if;
  select coalesce(jsonb_agg(jsonb_build_object('height', b.height, 'hash', b.hash) order by b.height), '[]'::jsonb)
    into recent from invoices_internal.chain_blocks b where b.chain = c.id;
  select coalesce(jsonb_agg(a), '[]'::jsonb) into watched from invoices_internal.watched_addresses(c.id) a;
  rescan := c.last_watch_at is not null and exists (
    select 1 from invoices_internal.address_assignments x where x.assigned_at > c.last_watch_at - interval '10 seconds');
  return jsonb_build_object(
    'cursor', case when c.cursor_height is not null
                   then jsonb_build_object('height', c.cursor_height, 'hash', c.cursor_hash) end,
    'recent', recent,
    'start_height', c.start_height,
    'max_blocks', c.max_blocks_per_poll,
    'confirmations', c.confirmations,
    'watched', watched,
    'watch_at', now(),
    'rescan_from', case when rescan then c.last_scan_from end);
end
$$;

-- An address's holdings are stamped when they happen (clock_timestamp()), not at their
-- transactions' starts: one ends before the next begins, also across the nodes of a cluster.
alter table invoices_internal.address_assignments alter column assigned_at set default clock_timestamp();

create or replace function invoices_internal.seed_btpay_create_payment_link(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  a jsonb := invoices_internal.seed_btpay_payment_link_args(body);
  mid uuid := invoices_internal.require_merchant();
  link jsonb;
begin
  link := invoices.create_payment_link(
    title => a->>'title', slug => a->>'slug', description => a->>'description',
    amount => (a->>'amount')::numeric, currency => a->>'currency', asset => a->>'asset',
    redirect_url => a->>'redirect_url', metadata => coalesce(a->'metadata', '{}'));
  return jsonb_build_object('status', 201, 'body', (
    select invoices_internal.seed_btpay_payment_link(
             to_jsonb(l) || jsonb_build_object('created_unix', extract(epoch from l.created_at)::bigint),
             coalesce(current_setting('invoices.public_base_url', true), ''))
      from invoices.payment_links l
     where l.merchant_id = mid and l.id = (link->>'id')::uuid));
end
$$;

create or replace function invoices_internal.seed_afc_get_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql stable
as $$
declare
  mid uuid;
  obj jsonb;
begin
  -- its merchant first (the only read across merchants), then the invoice by its key
  if params->>'uuid' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    select i.merchant_id into mid from invoices_internal.invoices i
     where i.id = (params->>'uuid')::uuid and i.status <> 'draft';
  end if;
  if mid is not null then
    select to_jsonb(r) || jsonb_build_object('created_unix', extract(epoch from r.created_at)::bigint) into obj
      from invoices_internal.invoice_rows r
     where r.merchant_id = mid and r.id = (params->>'uuid')::uuid;
  end if;
  if obj is null then
    perform invoices_internal.raise('P0002', 'invoice not found', null, null);
  end if;
  return jsonb_build_object('status', 200, 'body', invoices_internal.seed_afc_invoice(obj,
    invoices_internal.seed_afc_chain(obj->'metadata'->>'blockchain'),
    invoices_internal.seed_afc_payments((obj->>'merchant_id')::uuid, (obj->>'id')::uuid), true));
end
$$;

create or replace function invoices_internal.invoice_document(mid uuid, invoice_id uuid) returns jsonb
language plpgsql stable
as $$
declare
  obj jsonb := invoices_internal.invoice_object(mid, invoice_document.invoice_id);
  requote boolean;
  chain jsonb;
begin
  -- one statement per table (on Citus: a query on a shard may not call a function that reads)
  select m.public_requote into requote from invoices_internal.merchants m where m.id = mid;
  select jsonb_build_object('family', c.family, 'chain_id', c.chain_id, 'network', c.network,
                            'token_contract', c.tokens -> (obj->>'asset') ->> 'contract',
                            'token_decimals', (c.tokens -> (obj->>'asset') ->> 'decimals')::int)
    into chain
    from invoices_internal.chains c
   where obj->>'asset' = any (c.assets)
   order by c.active desc, c.created_at
   limit 1;
  if obj is null then
    return null;
  end if;
  return obj || jsonb_build_object('public_requote', requote, 'payment_chain', chain);
end
$$;

create or replace function invoices_internal.record_chain_poll(chain text, result jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  c invoices_internal.chains;
  tip bigint := (result->'tip'->>'height')::bigint;
  fork bigint := (result->>'fork_height')::bigint;
  mempool_known boolean := jsonb_typeof(result->'mempool') = 'array';
  last_block jsonb := result->'blocks'->-1;
  t record;
  pay invoices_internal.payments;
  a record;
  inv invoices_internal.invoices;
  required integer;
  confs integer;
  new_status text;
  orphaned bigint[] := '{}';
  touched bigint[] := '{}';
  invoices_touched uuid[] := '{}';
  is_late boolean;
  confirmed_time timestamptz;
  k record;
  r record;
  fork_hash text;
  watch_at timestamptz;
  received integer := 0;
  confirmed integer := 0;
  reverted integer := 0;
  in_mempool text[] := array(select m->>'txid' || ':' || (m->>'index')
                               from jsonb_array_elements(coalesce(result->'mempool', '[]')) m);
  whole_chain boolean;
  polled_at timestamptz := now();
begin
  -- on Citus the chain's rows (reference tables) change after reads across the shards in this
  -- transaction: one connection per node keeps that consistent
  perform set_config('citus.multi_shard_modify_mode', 'sequential', true);
  select * into c from invoices_internal.chains where id = chain for update;
  if not found then
    return jsonb_build_object('skipped', 'chain removed');
  end if;
  -- 1. a reorg: blocks above the fork are gone; their payments wait to be seen again
  if fork is not null then
    delete from invoices_internal.chain_blocks b where b.chain = c.id and b.height > fork;
    for r in update invoices_internal.payments o
                set block_height = null, block_hash = null, status = 'mempool', updated_at = now()
              where o.chain = c.id and o.block_height > fork and o.status <> 'reverted'
              returning o.id
    loop
      orphaned := orphaned || r.id;
    end loop;
  end if;
  insert into invoices_internal.chain_blocks (chain, height, hash)
  select c.id, (b->>'height')::bigint, b->>'hash' from jsonb_array_elements(result->'blocks') b
  on conflict on constraint chain_blocks_pkey do update set hash = excluded.hash;
  delete from invoices_internal.chain_blocks b where b.chain = c.id and b.height < tip - 100;

  -- 2. transfers: in blocks first, then the mempool (a transaction in both is in its block)
  for t in
    select x.*, 0 as pass from jsonb_to_recordset(result->'transfers')
      as x(txid text, index bigint, address text, asset text, amount_base numeric, amount numeric, block jsonb,
           block_time bigint)
    union all
    select x.*, 1 from jsonb_to_recordset(coalesce(result->'mempool', '[]'))
      as x(txid text, index bigint, address text, asset text, amount_base numeric, amount numeric, block jsonb,
           block_time bigint)
    order by pass
  loop
    select * into pay from invoices_internal.payments q
     where q.chain = c.id and q.txid = t.txid and q.output_index = t.index
     limit 1;
    if found then
      if t.block is not null and (pay.block_hash is distinct from t.block->>'hash' or pay.status = 'reverted') then
        update invoices_internal.payments
           set block_height = (t.block->>'height')::bigint, block_hash = t.block->>'hash',
               status = case when status = 'reverted' then 'in_block' else status end,
               reverted_at = null, missing_polls = 0, missing_since = null, updated_at = now()
         where merchant_id = pay.merchant_id and id = pay.id;
        touched := touched || pay.id;
      elsif t.block is null and pay.status = 'reverted' then
        -- back in the mempool (e.g. re-broadcast after a reorg)
        update invoices_internal.payments
           set status = 'mempool', reverted_at = null, missing_polls = 0, missing_since = null, updated_at = now()
         where merchant_id = pay.merchant_id and id = pay.id;
        touched := touched || pay.id;
      end if;
      continue;
    end if;
    -- a new payment: to the address of which wallet of this chain's network (the asset tells
    -- ETH from USDC)? Which invoice it pays is domain::settlement::holder_when_seen: the one
    -- that held the address when the payment was first seen, so a late payment for an earlier
    -- holder never pays the next one.
    select ad.merchant_id, ad.id,
           (select invoices_internal.payment_holder(array_agg(x.invoice_id), array_agg(x.assigned_at),
                                                    t.block_time, t.block is not null,
                                                    ad.invoice_id, ad.last_invoice_id)
              from invoices_internal.address_assignments x
             where x.merchant_id = ad.merchant_id and x.address_id = ad.id) as invoice_id into a
      from invoices_internal.addresses ad
      join invoices_internal.wallets w on w.merchant_id = ad.merchant_id and w.id = ad.wallet_id
     where ad.address = t.address and w.asset = t.asset and w.network = c.network
     order by ad.invoice_id is null, ad.available_at desc, ad.id
     limit 1;
    if not found then
      continue;   -- watched a moment ago, since removed
    end if;
    -- locks in the order every other path takes them: the invoice, then its address
    select * into inv from invoices_internal.invoices where merchant_id = a.merchant_id and id = a.invoice_id
       for update;
    is_late := inv.id is not null and invoices_internal.payment_is_late(inv.status, inv.expires_at);
    insert into invoices_internal.payments (merchant_id, chain, txid, output_index, address, address_id, invoice_id,
                                            asset, amount_base, amount, block_height, block_hash, status, late)
    values (a.merchant_id, c.id, t.txid, t.index, t.address, a.id, a.invoice_id, t.asset, t.amount_base, t.amount,
            (t.block->>'height')::bigint, t.block->>'hash', case when t.block is null then 'mempool' else 'in_block' end,
            is_late)
    returning * into pay;
    update invoices_internal.addresses set first_paid_at = now()
     where merchant_id = a.merchant_id and id = a.id and first_paid_at is null;
    received := received + 1;
    if inv.id is not null then
      perform invoices_internal.emit_events(inv, '{payment.received}', invoices_internal.payment_object(pay, tip));
    end if;
    touched := touched || pay.id;
  end loop;

  -- 3. orphaned payments not seen again: back in the mempool if it still has them, else reverted
  for pay in
    select * from invoices_internal.payments q
     where q.id = any (orphaned) and q.block_height is null
       and not exists (select 1 from jsonb_array_elements(coalesce(result->'mempool', '[]')) m
                        where m->>'txid' = q.txid and (m->>'index')::bigint = q.output_index)
  loop
    invoices_touched := invoices_touched || invoices_internal.revert_payment(pay, tip, polled_at);
    reverted := reverted + 1;
  end loop;
  touched := touched || orphaned;

  -- 3b. mempool payments the node no longer has (dropped, replaced by fee or nonce, double-
  -- spent): gone once missing from 3 polls that saw the chain up to its tip and for
  -- mempool_grace_seconds; then reverted, and their invoice goes back to pending or partial.
  -- A node that is behind, or one without a mempool API, counts nothing.
  whole_chain := mempool_known and not coalesce((result->>'behind')::boolean, false)
                 and coalesce((last_block->>'height')::bigint, c.cursor_height, -1) >= tip;
  if whole_chain then
    for pay in
      select * from invoices_internal.payments q
       where q.chain = c.id and q.status = 'mempool' and q.block_height is null
    loop
      if pay.txid || ':' || pay.output_index = any (in_mempool) then
        if pay.missing_polls > 0 then
          update invoices_internal.payments set missing_polls = 0, missing_since = null
           where merchant_id = pay.merchant_id and id = pay.id;
        end if;
        continue;
      end if;
      update invoices_internal.payments
         set missing_polls = missing_polls + 1, missing_since = coalesce(missing_since, polled_at)
       where merchant_id = pay.merchant_id and id = pay.id
      returning * into pay;
      if pay.missing_polls >= 3 and pay.missing_since <= polled_at - make_interval(secs => c.mempool_grace_seconds) then
        invoices_touched := invoices_touched || invoices_internal.revert_payment(pay, tip, polled_at);
        reverted := reverted + 1;
      end if;
    end loop;
  end if;

  -- 4. confirmations: every payment not yet confirmed, and those touched by this poll
  for pay in
    select * from invoices_internal.payments q
     where q.chain = c.id and (q.status in ('mempool', 'in_block') or q.id = any (touched))
       and q.status <> 'reverted'
  loop
    select coalesce(i.confirmations, c.confirmations) into required
      from invoices_internal.invoices i where i.merchant_id = pay.merchant_id and i.id = pay.invoice_id;
    required := coalesce(required, c.confirmations);
    confs := case when pay.block_height is null then 0 else greatest(tip - pay.block_height + 1, 0) end;
    new_status := case when confs >= required then 'confirmed'
                       when pay.block_height is not null then 'in_block' else 'mempool' end;
    if new_status <> pay.status then
      confirmed_time := case when new_status = 'confirmed' then now() end;
      update invoices_internal.payments
         set status = new_status, updated_at = now(), confirmed_at = confirmed_time
       where merchant_id = pay.merchant_id and id = pay.id
      returning * into pay;
      invoices_touched := invoices_touched || pay.invoice_id;
      if new_status = 'confirmed' then
        confirmed := confirmed + 1;
        select * into inv from invoices_internal.invoices where merchant_id = pay.merchant_id and id = pay.invoice_id;
        if inv.id is not null then
          perform invoices_internal.emit_events(inv, '{payment.confirmed}', invoices_internal.payment_object(pay, tip));
        end if;
      end if;
    elsif pay.id = any (touched) then
      invoices_touched := invoices_touched || pay.invoice_id;
    end if;
  end loop;

  -- 5. the invoices follow their payments (locked in one order: no deadlocks with the sweeps)
  for k in select i.merchant_id, i.id from invoices_internal.invoices i
            where i.id = any (invoices_touched)
            order by i.merchant_id, i.id
  loop
    perform invoices_internal.settle_invoice(k.merchant_id, k.id);
  end loop;

  -- the chain's row: every value computed first (no subquery or function inside its CASEs)
  if fork is not null then
    fork_hash := (select b.hash from invoices_internal.chain_blocks b where b.chain = c.id and b.height = fork);
  end if;
  -- a lagging node's poll scanned nothing: the addresses handed out before it still need the
  -- rescan it did not do, so its watch time is not kept
  watch_at := case when coalesce((result->>'behind')::boolean, false) then null
                   else (result->>'watch_at')::timestamptz end;

  update invoices_internal.chains
     set tip_height = tip, tip_hash = result->'tip'->>'hash', last_poll_at = now(), last_error = null,
         last_watch_at = coalesce(watch_at, last_watch_at),
         last_scan_from = case when fork is not null then fork + 1
                               when (last_block->>'height')::bigint > coalesce(cursor_height, -1)
                               then coalesce(cursor_height + 1, (result->'blocks'->0->>'height')::bigint)
                               else last_scan_from end,
         cursor_height = coalesce((last_block->>'height')::bigint, case when fork is not null then fork else cursor_height end),
         cursor_hash = coalesce(last_block->>'hash', case when fork is not null then fork_hash else cursor_hash end)
   where id = c.id;
  return jsonb_build_object('tip', tip, 'blocks', jsonb_array_length(result->'blocks'), 'received', received,
                            'confirmed', confirmed, 'reverted', reverted, 'reorg', fork is not null);
end
$$;

create or replace function invoices_internal.record_chain_error(chain text, error text) returns void
language plpgsql volatile
as $$
begin
  -- on Citus the chain's rows (reference tables) change after reads across the shards in this
  -- transaction: one connection per node keeps that consistent
  perform set_config('citus.multi_shard_modify_mode', 'sequential', true);
  -- a node's URL may carry its API key (path, query, user info): errors keep its origin only
  update invoices_internal.chains c
     set last_error = invoices_internal.redact_urls(replace(record_chain_error.error, c.rpc_url, invoices_internal.url_origin(c.rpc_url))),
         last_error_at = now(), last_poll_at = now()
   where c.id = record_chain_error.chain;
end
$$;

create or replace function invoices_internal.release_address(mid uuid, inv_id uuid, addr_id bigint, pause_minutes integer)
returns void
language plpgsql volatile
as $$
declare
  available timestamptz := now() + make_interval(mins => pause_minutes);
  released timestamptz := clock_timestamp();  -- (Citus takes no volatile function in an UPDATE)
begin
  update invoices_internal.addresses
     set invoice_id = null, available_at = available
   where merchant_id = mid and id = addr_id and invoice_id = inv_id;
  update invoices_internal.address_assignments set released_at = released
   where merchant_id = mid and address_id = addr_id and invoice_id = inv_id and released_at is null;
end
$$;

create or replace function invoices_internal.seed_invoice(ref text) returns jsonb
language plpgsql stable
as $$
declare
  mid uuid := invoices_internal.require_merchant();
  inv_id uuid := invoices_internal.resolve_invoice(mid, ref);
begin
  return (select to_jsonb(r) || jsonb_build_object('created_unix', extract(epoch from r.created_at)::bigint)
            from invoices_internal.invoice_rows r where r.merchant_id = mid and r.id = inv_id);
end
$$;

create or replace function invoices_internal.seed_v1_list_invoices(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql stable
as $$
declare
  p jsonb := invoices_internal.seed_v1_list_params(query);
  mid uuid := invoices_internal.require_merchant();
  total bigint;
  page jsonb;
begin
  select count(*) into total from invoices_internal.invoices r
   where r.merchant_id = mid and (p->>'status' is null or r.status = p->>'status');
  select coalesce(jsonb_agg(invoices_internal.seed_v1_invoice(
           to_jsonb(r) || jsonb_build_object('created_unix', extract(epoch from r.created_at)::bigint))
           order by r.created_at desc, r.id desc), '[]')
    into page
    from (select * from invoices_internal.invoice_rows r
           where r.merchant_id = mid and (p->>'status' is null or r.status = p->>'status')
           order by r.created_at desc, r.id desc
           limit (p->>'limit')::int offset (p->>'offset')::bigint) r;
  return jsonb_build_object('status', 200, 'body', jsonb_build_object(
    'invoices', page, 'total', total, 'limit', (p->>'limit')::int, 'offset', (p->>'offset')::bigint,
    'page', (p->>'page')::bigint));
end
$$;

-- On a Citus worker node, the extension's sequences take values from a range of their own,
-- above group id << 48 (as Citus does for the sequences it creates itself): rows of one table
-- are inserted both by the coordinator and by the triggers on the workers' shards (audit rows,
-- webhook deliveries), and their ids must never meet. Does nothing on the coordinator (group 0)
-- or without Citus; returns how many sequences it moved.
create function invoices_internal.claim_sequence_range() returns integer
language plpgsql volatile
as $$
declare
  g bigint;
  s record;
  n integer := 0;
begin
  if pg_catalog.to_regclass('pg_catalog.pg_dist_local_group') is null then
    return 0;
  end if;
  execute 'select groupid from pg_catalog.pg_dist_local_group' into g;
  if coalesce(g, 0) = 0 then
    return 0;
  end if;
  for s in select format('%I.%I', q.schemaname, q.sequencename) as name, q.last_value
             from pg_catalog.pg_sequences q where q.schemaname = 'invoices_internal' loop
    if coalesce(s.last_value, 0) < g << 48 then
      perform pg_catalog.setval(s.name::regclass, g << 48);
      n := n + 1;
    end if;
  end loop;
  return n;
end
$$;

revoke execute on function invoices_internal.claim_sequence_range() from public;

create or replace function invoices.distribute_on_citus() returns setof text
language plpgsql volatile
as $$
declare
  authorized boolean := invoices_internal.authorize('distribute_on_citus');  -- first: the caller's scope
  p record;
  known boolean;
  call text;
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'citus') then
    raise exception 'Citus is not installed in database %', pg_catalog.current_database()
      using errcode = '55000',
            hint = 'on every node: shared_preload_libraries = ''citus,invoices'', CREATE EXTENSION citus (then invoices); '
                   'add the workers with citus_add_node() on the coordinator, then call invoices.distribute_on_citus() there';
  end if;
  if coalesce(pg_catalog.current_setting('citus.enable_unsafe_triggers', true), 'off') <> 'on' then
    raise exception 'citus.enable_unsafe_triggers is off: the status machine, audit and append-only triggers cannot be distributed'
      using errcode = '55000',
            hint = 'ALTER SYSTEM SET citus.enable_unsafe_triggers = on on every node (coordinator and workers) and reload';
  end if;
  -- the tables are distributed one by one: while the reference tables are created, the tables
  -- referencing them are still plain tables, which Citus would otherwise convert (with their
  -- views) into Citus local tables first
  perform pg_catalog.set_config('citus.enable_local_reference_table_foreign_keys', 'off', true);
  for p in select * from invoices_internal.distribution_plan order by position loop
    continue when p.kind = 'local';
    if pg_catalog.to_regclass(p.table_name) is null then
      raise exception 'the distribution plan names %, which does not exist', p.table_name
        using errcode = '42P01', hint = 'update the extension (ALTER EXTENSION invoices UPDATE) before distributing it';
    end if;
    -- idempotent: a table Citus already knows is left as it is
    execute 'select exists (select 1 from pg_catalog.pg_dist_partition where logicalrelid = $1::regclass)'
      into known using p.table_name;
    continue when known;
    call := case p.kind
      when 'reference' then pg_catalog.format('select pg_catalog.create_reference_table(%L)', p.table_name)
      else pg_catalog.format('select pg_catalog.create_distributed_table(%L, %L, colocate_with => %L)',
                             p.table_name, p.distribution_column, coalesce(p.colocate_with, 'none'))
    end;
    execute call;
    return next call;
  end loop;
  -- Citus checks the querying role's privileges on the shards themselves, where a view's owner
  -- does not count (citus#1683): the roles that read the views get SELECT on the tables, and
  -- row-level security scopes it on every node (merchant_scope, with the merchant of the
  -- request passed on by SET LOCAL). In a request without a key the API role reads what the
  -- public views show (public_doors); in any other session it reads nothing. The server
  -- secrets stay unreadable.
  for p in select * from invoices_internal.distribution_plan
            where kind <> 'local' and table_name <> 'invoices_internal.server_secrets' order by position loop
    execute pg_catalog.format('grant select on %s to invoices_api, invoices_admin', p.table_name);
  end loop;
  for p in select t.table_name from (values ('invoices_internal.merchants'), ('invoices_internal.invoices'),
                                            ('invoices_internal.invoice_lines'), ('invoices_internal.quotes'),
                                            ('invoices_internal.payment_links')) t(table_name)
            where not exists (select 1 from pg_catalog.pg_policy x
                               where x.polrelid = t.table_name::regclass and x.polname = 'public_doors') loop
    execute pg_catalog.format('create policy public_doors on %s for select to invoices_api '
                              'using (invoices_internal.anonymous_request())', p.table_name);
    return next pg_catalog.format('create policy public_doors on %s', p.table_name);
  end loop;
  -- each worker node's sequences in a range of its own (run again after citus_add_node)
  perform 1 from pg_catalog.run_command_on_workers('select invoices_internal.claim_sequence_range()') r
   where not r.success;
  if found then
    raise exception 'a worker node could not move its sequences to its own range'
      using errcode = '55000', hint = 'run on every worker: select invoices_internal.claim_sequence_range()';
  end if;
  -- the worker nodes take the merchant and key of a request from the coordinator's SET LOCAL,
  -- sent over the connections of the querying role
  perform 1 from pg_catalog.run_command_on_workers(
    'grant set on parameter invoices.merchant_id, invoices.api_key_id, invoices.api_key_scopes, invoices.actor to invoices_api, invoices_admin') r
   where not r.success;
  if found then
    raise exception 'granting SET on invoices.merchant_id to the API roles failed on a worker node'
      using errcode = '55000', hint = 'run it on every worker: grant set on parameter invoices.merchant_id, invoices.api_key_id, invoices.api_key_scopes, invoices.actor to invoices_api, invoices_admin';
  end if;
end
$$;

create or replace function invoices.create_invoice(
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
         -- the lines as the invoice object shows them (amounts as strings)
         (select coalesce(jsonb_agg(jsonb_build_object(
                   'description', l.description, 'quantity', l.quantity::text,
                   'unit_price', l.unit_price::text, 'amount', l.amount::text) order by l.n), '[]'::jsonb)
            from rows from (jsonb_to_recordset(p->'lines')
                              as (description text, quantity numeric, unit_price numeric, amount numeric))
                 with ordinality l(description, quantity, unit_price, amount, n))
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

comment on function invoices.distribute_on_citus() is
  'Superuser, on a Citus coordinator: distribute the extension''s tables as invoices_internal.distribution_plan says (reference tables, then merchants and the tables colocated with it by merchant_id, then the routing tables), skipping those already distributed and the local ones; grant the API roles the tables behind row-level security; give each worker node''s sequences a range of their own. Run it again after adding a node. Returns the calls it made. Needs citus.enable_unsafe_triggers = on on every node. Without Citus it raises 55000 with a hint.';
create or replace function invoices_internal.seed_v1_create_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  a jsonb := invoices_internal.seed_v1_create_args(body, (current_date + 7)::text);
  obj jsonb;
  wire jsonb;
  code text;
  message text;
  detail text;
begin
  begin
    obj := invoices.create_invoice(
      lines => a->'lines', currency => a->>'currency', customer_email => a->>'customer_email',
      customer_name => a->>'customer_name', customer_company => a->>'customer_company',
      tax_rate => (a->>'tax_rate')::numeric, discount_amount => (a->>'discount_amount')::numeric,
      due_date => (a->>'due_date')::date, notes => a->>'notes', metadata => a->'metadata',
      asset => a->>'asset', send => coalesce((a->>'send')::boolean, false));
  exception when others then
    get stacked diagnostics code = returned_sqlstate, message = message_text, detail = pg_exception_detail;
    if code = 'PGRST' then
      detail := message::jsonb->>'details';
      code := message::jsonb->>'code';
      message := message::jsonb->>'message';
    end if;
    -- a Living Invoices request names its lines items, its e-mail to_email, its name to_name
    if a->>'dialect' = 'living_invoices' then
      message := regexp_replace(regexp_replace(regexp_replace(message, '\mlines\M', 'items', 'g'),
                   '\mcustomer_email\M', 'to_email', 'g'), '\mcustomer_name\M', 'to_name', 'g');
      detail := regexp_replace(regexp_replace(regexp_replace(detail, '"lines', '"items', 'g'),
                  '"customer_email"', '"to_email"', 'g'), '"customer_name"', '"to_name"', 'g');
    end if;
    if detail is not null then
      raise exception using errcode = code, message = message, detail = detail;
    end if;
    raise exception using errcode = code, message = message;
  end;
  -- a wire: the merchant's bank-transfer instructions go onto the invoice (its PDF, its page)
  if a->'payment_methods' ? 'wire' then
    -- (read first, then written: Citus refuses a STABLE function over columns in an UPDATE)
    select jsonb_build_object('bank_instructions', m.bank_instructions) into wire
      from invoices_internal.merchants m
     where m.id = (obj->>'merchant_id')::uuid and m.bank_instructions is not null;
    if wire is not null then
      update invoices_internal.invoices i
         set merchant_snapshot = i.merchant_snapshot || wire
       where i.merchant_id = (obj->>'merchant_id')::uuid and i.id = (obj->>'id')::uuid;
    end if;
    if wire is null then
      perform invoices_internal.raise('22023', 'invalid invoice: payment_methods has wire, and no bank instructions are set',
        '{"errors":[{"field":"payment_methods","message":"wire needs the merchant''s bank instructions"}]}',
        'the merchant sets them once with invoices.set_bank_instructions(…)');
    end if;
  end if;
  return jsonb_build_object('status', 201,
    'body', invoices_internal.seed_v1_invoice(invoices_internal.seed_invoice(obj->>'id')));
end
$$;

create or replace function invoices_internal.claim_sequence_range() returns integer
language plpgsql volatile
as $$
declare
  g bigint;
  s record;
  n integer := 0;
begin
  if pg_catalog.to_regclass('pg_catalog.pg_dist_local_group') is null then
    return 0;
  end if;
  execute 'select groupid from pg_catalog.pg_dist_local_group' into g;
  if coalesce(g, 0) = 0 then
    return 0;
  end if;
  for s in select format('%I.%I', q.schemaname, q.sequencename) as name, q.last_value
             from pg_catalog.pg_sequences q where q.schemaname = 'invoices_internal' loop
    if coalesce(s.last_value, 0) < g << 48 then
      perform pg_catalog.setval(s.name::regclass, g << 48);
      n := n + 1;
    end if;
  end loop;
  return n;
end
$$;

create or replace function invoices.distribute_on_citus() returns setof text
language plpgsql volatile
as $$
declare
  authorized boolean := invoices_internal.authorize('distribute_on_citus');  -- first: the caller's scope
  p record;
  known boolean;
  call text;
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'citus') then
    raise exception 'Citus is not installed in database %', pg_catalog.current_database()
      using errcode = '55000',
            hint = 'on every node: shared_preload_libraries = ''citus,invoices'', CREATE EXTENSION citus (then invoices); '
                   'add the workers with citus_add_node() on the coordinator, then call invoices.distribute_on_citus() there';
  end if;
  if coalesce(pg_catalog.current_setting('citus.enable_unsafe_triggers', true), 'off') <> 'on' then
    raise exception 'citus.enable_unsafe_triggers is off: the status machine, audit and append-only triggers cannot be distributed'
      using errcode = '55000',
            hint = 'ALTER SYSTEM SET citus.enable_unsafe_triggers = on on every node (coordinator and workers) and reload';
  end if;
  -- the tables are distributed one by one: while the reference tables are created, the tables
  -- referencing them are still plain tables, which Citus would otherwise convert (with their
  -- views) into Citus local tables first
  perform pg_catalog.set_config('citus.enable_local_reference_table_foreign_keys', 'off', true);

  for p in select * from invoices_internal.distribution_plan order by position loop
    continue when p.kind = 'local';
    if pg_catalog.to_regclass(p.table_name) is null then
      raise exception 'the distribution plan names %, which does not exist', p.table_name
        using errcode = '42P01', hint = 'update the extension (ALTER EXTENSION invoices UPDATE) before distributing it';
    end if;
    -- idempotent: a table Citus already knows is left as it is
    execute 'select exists (select 1 from pg_catalog.pg_dist_partition where logicalrelid = $1::regclass)'
      into known using p.table_name;
    continue when known;
    call := case p.kind
      when 'reference' then pg_catalog.format('select pg_catalog.create_reference_table(%L)', p.table_name)
      else pg_catalog.format('select pg_catalog.create_distributed_table(%L, %L, colocate_with => %L)',
                             p.table_name, p.distribution_column, coalesce(p.colocate_with, 'none'))
    end;
    -- a database that already holds data is distributed in place: its rows are copied into
    -- the shards as they are, without the triggers that guard new rows (a pending invoice was
    -- never a new draft); the shards get the triggers enabled again
    execute pg_catalog.format('alter table %s disable trigger user', p.table_name);
    execute call;
    execute pg_catalog.format('alter table %s enable trigger user', p.table_name);
    return next call;
  end loop;
  -- the copies left on the coordinator by distributing a table that held rows, emptied once
  -- every table is distributed (no local table refers to them any more)
  for p in select * from invoices_internal.distribution_plan where kind <> 'local' order by position desc loop
    if exists (select 1 from pg_catalog.pg_class c where c.oid = p.table_name::regclass and c.relpages > 0)
       or pg_catalog.pg_relation_size(p.table_name::regclass) > 0 then
      execute pg_catalog.format('alter table %s disable trigger user', p.table_name);
      perform pg_catalog.truncate_local_data_after_distributing_table(p.table_name::regclass);
      execute pg_catalog.format('alter table %s enable trigger user', p.table_name);
    end if;
  end loop;
  -- Citus checks the querying role's privileges on the shards themselves, where a view's owner
  -- does not count (citus#1683): the roles that read the views get SELECT on the tables, and
  -- row-level security scopes it on every node (merchant_scope, with the merchant of the
  -- request passed on by SET LOCAL). In a request without a key the API role reads what the
  -- public views show (public_doors); in any other session it reads nothing. The server
  -- secrets stay unreadable.
  for p in select * from invoices_internal.distribution_plan
            where kind <> 'local' and table_name <> 'invoices_internal.server_secrets' order by position loop
    execute pg_catalog.format('grant select on %s to invoices_api, invoices_admin', p.table_name);
  end loop;
  for p in select t.table_name from (values ('invoices_internal.merchants'), ('invoices_internal.invoices'),
                                            ('invoices_internal.invoice_lines'), ('invoices_internal.quotes'),
                                            ('invoices_internal.payment_links')) t(table_name)
            where not exists (select 1 from pg_catalog.pg_policy x
                               where x.polrelid = t.table_name::regclass and x.polname = 'public_doors') loop
    execute pg_catalog.format('create policy public_doors on %s for select to invoices_api '
                              'using (invoices_internal.anonymous_request())', p.table_name);
    return next pg_catalog.format('create policy public_doors on %s', p.table_name);
  end loop;
  -- each worker node's sequences in a range of its own (run again after citus_add_node)
  perform 1 from pg_catalog.run_command_on_workers('select invoices_internal.claim_sequence_range()') r
   where not r.success;
  if found then
    raise exception 'a worker node could not move its sequences to its own range'
      using errcode = '55000', hint = 'run on every worker: select invoices_internal.claim_sequence_range()';
  end if;
  -- the worker nodes take the merchant and key of a request from the coordinator's SET LOCAL,
  -- sent over the connections of the querying role
  perform 1 from pg_catalog.run_command_on_workers(
    'grant set on parameter invoices.merchant_id, invoices.api_key_id, invoices.api_key_scopes, invoices.actor to invoices_api, invoices_admin') r
   where not r.success;
  if found then
    raise exception 'granting SET on invoices.merchant_id to the API roles failed on a worker node'
      using errcode = '55000', hint = 'run it on every worker: grant set on parameter invoices.merchant_id, invoices.api_key_id, invoices.api_key_scopes, invoices.actor to invoices_api, invoices_admin';
  end if;
end
$$;

create or replace function invoices.distribute_on_citus() returns setof text
language plpgsql volatile
as $$
declare
  authorized boolean := invoices_internal.authorize('distribute_on_citus');  -- first: the caller's scope
  p record;
  known boolean;
  call text;
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'citus') then
    raise exception 'Citus is not installed in database %', pg_catalog.current_database()
      using errcode = '55000',
            hint = 'on every node: shared_preload_libraries = ''citus,invoices'', CREATE EXTENSION citus (then invoices); '
                   'add the workers with citus_add_node() on the coordinator, then call invoices.distribute_on_citus() there';
  end if;
  if coalesce(pg_catalog.current_setting('citus.enable_unsafe_triggers', true), 'off') <> 'on' then
    raise exception 'citus.enable_unsafe_triggers is off: the status machine, audit and append-only triggers cannot be distributed'
      using errcode = '55000',
            hint = 'ALTER SYSTEM SET citus.enable_unsafe_triggers = on on every node (coordinator and workers) and reload';
  end if;
  -- the tables are distributed one by one: while the reference tables are created, the tables
  -- referencing them are still plain tables, which Citus would otherwise convert (with their
  -- views) into Citus local tables first
  perform pg_catalog.set_config('citus.enable_local_reference_table_foreign_keys', 'off', true);

  for p in select * from invoices_internal.distribution_plan order by position loop
    continue when p.kind = 'local';
    if pg_catalog.to_regclass(p.table_name) is null then
      raise exception 'the distribution plan names %, which does not exist', p.table_name
        using errcode = '42P01', hint = 'update the extension (ALTER EXTENSION invoices UPDATE) before distributing it';
    end if;
    -- idempotent: a table Citus already knows is left as it is
    execute 'select exists (select 1 from pg_catalog.pg_dist_partition where logicalrelid = $1::regclass)'
      into known using p.table_name;
    continue when known;
    call := case p.kind
      when 'reference' then pg_catalog.format('select pg_catalog.create_reference_table(%L)', p.table_name)
      else pg_catalog.format('select pg_catalog.create_distributed_table(%L, %L, colocate_with => %L)',
                             p.table_name, p.distribution_column, coalesce(p.colocate_with, 'none'))
    end;
    -- a database that already holds data is distributed in place: its rows are copied into
    -- the shards as they are, without the triggers that guard new rows (a pending invoice was
    -- never a new draft); the shards get the triggers enabled again
    execute pg_catalog.format('alter table %s disable trigger user', p.table_name);
    execute call;
    execute pg_catalog.format('alter table %s enable trigger user', p.table_name);
    return next call;
  end loop;
  -- the copies left on the coordinator by distributing a table that held rows, emptied once
  -- every table is distributed (no local table refers to them any more)
  for p in select * from invoices_internal.distribution_plan where kind <> 'local' order by position desc loop
    if pg_catalog.pg_relation_size(p.table_name::regclass) > 0 then
      execute pg_catalog.format('alter table %s disable trigger user', p.table_name);
      perform pg_catalog.truncate_local_data_after_distributing_table(p.table_name::regclass);
      execute pg_catalog.format('alter table %s enable trigger user', p.table_name);
    end if;
  end loop;
  -- Citus checks the querying role's privileges on the shards themselves, where a view's owner
  -- does not count (citus#1683): the roles that read the views get SELECT on the tables, and
  -- row-level security scopes it on every node (merchant_scope, with the merchant of the
  -- request passed on by SET LOCAL). In a request without a key the API role reads what the
  -- public views show (public_doors); in any other session it reads nothing. The server
  -- secrets stay unreadable.
  for p in select * from invoices_internal.distribution_plan
            where kind <> 'local' and table_name <> 'invoices_internal.server_secrets' order by position loop
    execute pg_catalog.format('grant select on %s to invoices_api, invoices_admin', p.table_name);
  end loop;
  for p in select t.table_name from (values ('invoices_internal.merchants'), ('invoices_internal.invoices'),
                                            ('invoices_internal.invoice_lines'), ('invoices_internal.quotes'),
                                            ('invoices_internal.payment_links')) t(table_name)
            where not exists (select 1 from pg_catalog.pg_policy x
                               where x.polrelid = t.table_name::regclass and x.polname = 'public_doors') loop
    execute pg_catalog.format('create policy public_doors on %s for select to invoices_api '
                              'using (invoices_internal.anonymous_request())', p.table_name);
    return next pg_catalog.format('create policy public_doors on %s', p.table_name);
  end loop;
  -- each worker node's sequences in a range of its own (run again after citus_add_node)
  perform 1 from pg_catalog.run_command_on_workers('select invoices_internal.claim_sequence_range()') r
   where not r.success;
  if found then
    raise exception 'a worker node could not move its sequences to its own range'
      using errcode = '55000', hint = 'run on every worker: select invoices_internal.claim_sequence_range()';
  end if;
  -- the worker nodes take the merchant and key of a request from the coordinator's SET LOCAL,
  -- sent over the connections of the querying role
  perform 1 from pg_catalog.run_command_on_workers(
    'grant set on parameter invoices.merchant_id, invoices.api_key_id, invoices.api_key_scopes, invoices.actor to invoices_api, invoices_admin') r
   where not r.success;
  if found then
    raise exception 'granting SET on invoices.merchant_id to the API roles failed on a worker node'
      using errcode = '55000', hint = 'run it on every worker: grant set on parameter invoices.merchant_id, invoices.api_key_id, invoices.api_key_scopes, invoices.actor to invoices_api, invoices_admin';
  end if;
end
$$;

-- The SQL suite on Citus (issue 23): status times from the statement, open_exposure joins the rates
create or replace function invoices_internal.invoice_before_update() returns trigger
language plpgsql
as $$
declare
  t text[];
begin
  if new.id <> old.id or new.merchant_id <> old.merchant_id or new.invoice_number <> old.invoice_number
     or new.number_seq <> old.number_seq or new.slug <> old.slug or new.created_at <> old.created_at then
    raise exception 'invoice % cannot change its identity (id, merchant, number, slug)', old.invoice_number
      using errcode = '23514';
  end if;
  if old.status <> 'draft' and (new.currency, new.subtotal, new.discount_amount, new.tax_rate,
                                new.tax_amount, new.total)
      is distinct from (old.currency, old.subtotal, old.discount_amount, old.tax_rate,
                        old.tax_amount, old.total) then
    raise exception 'invoice % is %: its amounts are locked', old.invoice_number, old.status
      using errcode = '23514', hint = 'only draft invoices can change their amounts';
  end if;
  -- a statement that gives updated_at (the functions that change a status give now()) stamps
  -- the row with it: on Citus that is the coordinator's time, the one the transaction's other
  -- rows carry (quotes, the returned object), not the time this shard's transaction began
  if new.updated_at is not distinct from old.updated_at then
    new.updated_at := now();
  end if;
  if new.status is distinct from old.status then
    t := invoices_internal.check_transition(old.status, new.status);
    case t[1]
      when 'finalized_at' then new.finalized_at := new.updated_at;
      when 'partially_paid_at' then new.partially_paid_at := new.updated_at;
      when 'paid_at' then new.paid_at := new.updated_at;
      when 'confirmed_at' then new.confirmed_at := new.updated_at;
      when 'expired_at' then new.expired_at := new.updated_at;
      when 'overdue_at' then new.overdue_at := new.updated_at;
      when 'cancelled_at' then new.cancelled_at := new.updated_at;
      else null;
    end case;
    -- the audit row and the outbox, in the same transaction (one statement)
    perform invoices_internal.emit_events(row(new.*)::invoices_internal.invoices, array[t[2]], null, array[old.status], array[new.status]);
    -- expiry, cancellation and confirmation release the deposit address after its pause (the
    -- invoice's pause_minutes, else invoices.address_pause_minutes: a day), so a late payment
    -- to it still finds its invoice instead of the address's next holder
    -- (the invoice keeps showing deposit_address; address_id goes, so an invoice revived by
    -- a late payment or a reorg never claims an address the carousel has handed on)
    if new.status in ('expired', 'cancelled', 'confirmed') and old.address_id is not null then
      perform invoices_internal.release_address(new.merchant_id, new.id, old.address_id,
        coalesce(new.pause_minutes, current_setting('invoices.address_pause_minutes')::int));
      new.address_id := null;
    end if;
  end if;
  perform invoices_internal.check_invoice_row(row(new.*)::invoices_internal.invoices);
  return new;
end
$$;

create or replace function invoices_internal.invoice_before_insert() returns trigger
language plpgsql
as $$
begin
  if new.status = 'pending' then
    new.finalized_at := new.created_at;   -- draft -> pending, always legal (the statement's time)
  elsif new.status <> 'draft' then
    raise exception 'a new invoice starts as draft, not %', new.status
      using errcode = '23514', hint = 'create it, then call invoices.finalize_invoice';
  end if;
  perform invoices_internal.check_invoice_row(row(new.*)::invoices_internal.invoices);
  if new.status = 'pending' then
    perform invoices_internal.emit_events(row(new.*)::invoices_internal.invoices, '{invoice.created,invoice.finalized}', null,
                                          '{NULL,draft}', '{draft,pending}');
  else
    perform invoices_internal.emit_events(row(new.*)::invoices_internal.invoices, '{invoice.created}', null, '{NULL}', '{draft}');
  end if;
  return new;
end
$$;

create or replace function invoices_internal.set_status(mid uuid, invoice_id uuid, to_status text) returns void
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

create or replace function invoices_internal.expire_and_mark_overdue(out expired integer, out overdue integer)
language plpgsql volatile
as $$
declare
  g record;
  k record;
  locked uuid[];
  n integer;
begin
  -- each row changes through the status trigger: stamped and audited. Candidates are read
  -- without locks, then each merchant's are locked with SKIP LOCKED (rows being paid, cancelled
  -- or swept by someone else are left for the next tick) in one order, so sweeps never wait on
  -- or deadlock with other work; every statement that locks or writes names one merchant (on
  -- Citus: routed to one shard).
  expired := 0;
  overdue := 0;
  for g in select i.merchant_id, array_agg(i.id) as ids from invoices_internal.invoices i
            where i.status in ('pending', 'overdue') and i.amount_paid = 0 and i.expires_at <= now()
            group by i.merchant_id order by i.merchant_id
  loop
    locked := '{}';
    for k in select i.id, i.status, i.amount_paid, i.expires_at from invoices_internal.invoices i
              where i.merchant_id = g.merchant_id and i.id = any (g.ids)
              order by i.id
              for update skip locked
    loop
      -- checked again on the locked (latest) version
      if k.status in ('pending', 'overdue') and k.amount_paid = 0 and k.expires_at <= now() then
        locked := locked || k.id;
      end if;
    end loop;
    update invoices_internal.invoices i set status = 'expired', updated_at = now()
     where i.merchant_id = g.merchant_id and i.id = any (locked);
    get diagnostics n = row_count;
    expired := expired + n;
  end loop;
  for g in select i.merchant_id, array_agg(i.id) as ids from invoices_internal.invoices i
            where i.status in ('pending', 'partial') and i.due_date < current_date
            group by i.merchant_id order by i.merchant_id
  loop
    locked := '{}';
    for k in select i.id, i.status, i.due_date from invoices_internal.invoices i
              where i.merchant_id = g.merchant_id and i.id = any (g.ids)
              order by i.id
              for update skip locked
    loop
      if k.status in ('pending', 'partial') and k.due_date < current_date then
        locked := locked || k.id;
      end if;
    end loop;
    update invoices_internal.invoices i set status = 'overdue', updated_at = now()
     where i.merchant_id = g.merchant_id and i.id = any (locked);
    get diagnostics n = row_count;
    overdue := overdue + n;
  end loop;
end
$$;

create or replace function invoices_internal.settle_invoice(mid uuid, inv_id uuid) returns void
language plpgsql volatile
as $$
declare
  i invoices_internal.invoices;
  decision jsonb;
  step text;
begin
  -- lock
  select * into i from invoices_internal.invoices where merchant_id = mid and id = inv_id for update;
  if not found then
    return;
  end if;
  -- read and decide
  decision := invoices_internal.settlement(
    i.status, i.asset, i.currency, i.total, i.exponent,
    (select q.asset_amount from invoices_internal.quotes q
      where q.merchant_id = mid and q.invoice_id = inv_id order by q.created_at desc limit 1),
    (select m.payment_tolerance_percent from invoices_internal.merchants m where m.id = mid),
    (select jsonb_agg(jsonb_build_object('asset', p.asset, 'amount', p.amount::text, 'status', p.status,
                                         'late', p.late))
       from invoices_internal.payments p where p.merchant_id = mid and p.invoice_id = inv_id));
  if decision is null then
    return;   -- a draft, or a cancelled invoice (its money stays in payments, to refund)
  end if;
  -- write: the amounts first (no status change), so the status events carry them
  update invoices_internal.invoices
     set asset_paid = (decision->>'asset_paid')::numeric, amount_paid = (decision->>'amount_paid')::numeric,
         overpaid = (decision->>'overpaid')::boolean, paid_late = (decision->>'paid_late')::boolean
   where merchant_id = mid and id = inv_id
     and (asset_paid, amount_paid, overpaid, paid_late) is distinct from
         ((decision->>'asset_paid')::numeric, (decision->>'amount_paid')::numeric,
          (decision->>'overpaid')::boolean, (decision->>'paid_late')::boolean);
  for step in select jsonb_array_elements_text(decision->'steps') loop
    update invoices_internal.invoices set status = step, updated_at = now() where merchant_id = mid and id = inv_id;
  end loop;
end
$$;

create or replace view invoices.open_exposure with (security_barrier) as
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

-- Events: a statement per table, the deliveries only when someone listens (issue 24)
create or replace function invoices_internal.emit_events(i invoices_internal.invoices, events text[], payment jsonb default null,
                                              audit_from text[] default null, audit_to text[] default null)
returns void
language plpgsql volatile
as $$
declare
  data jsonb := jsonb_build_object(
    'id', i.id, 'invoice_number', i.invoice_number, 'status', i.status, 'currency', i.currency,
    'total', i.total::text, 'amount_paid', i.amount_paid::text, 'asset', i.asset,
    'asset_paid', i.asset_paid::text, 'address', i.deposit_address, 'overpaid', i.overpaid,
    'paid_late', i.paid_late, 'order_id', i.order_id, 'metadata', i.metadata);
  ids uuid[] := '{}';
  retries integer;
begin
  if payment is not null then
    data := data || jsonb_build_object('payment', payment);
  end if;
  for n in 1 .. cardinality(events) loop
    ids := ids || invoices_internal.uuid_v7();   -- in the order of the events
  end loop;
  -- a statement per table, each naming the merchant (on Citus: its shard); the deliveries'
  -- statement only when someone listens (an endpoint of the merchant, or the invoice's callback)
  if audit_to is not null then
    insert into invoices_internal.audit_log (merchant_id, invoice_id, from_status, to_status, event, actor)
    select i.merchant_id, i.id, t.from_status, t.to_status, t.event, invoices_internal.current_actor()
      from unnest(audit_from, audit_to, events) t(from_status, to_status, event);
  end if;
  insert into invoices_internal.events (merchant_id, id, event, invoice_id, data)
  select i.merchant_id, e.id, e.event, i.id, data
    from unnest(ids, events) e(id, event);
  if i.callback_url is not null
     or exists (select 1 from invoices_internal.webhook_endpoints w where w.merchant_id = i.merchant_id and w.active) then
    retries := invoices_internal.retry_count();
    insert into invoices_internal.webhook_deliveries (merchant_id, event_id, endpoint_id, url, secret, max_retries)
    select i.merchant_id, d.event_id, d.endpoint_id, d.url, d.secret, d.max_retries
      from (select ev.id as event_id, ev.event, ev.n, w.id as endpoint_id, w.url, null::text as secret,
                   retries as max_retries, 1 as kind
              from unnest(ids, events) with ordinality ev(id, event, n)
              join invoices_internal.webhook_endpoints w
                on w.merchant_id = i.merchant_id and w.active and ('*' = any (w.events) or ev.event = any (w.events))
            union all
            select ev.id, ev.event, ev.n, null, i.callback_url, i.callback_secret, coalesce(i.attempts_callback, retries), 2
              from unnest(ids, events) with ordinality ev(id, event, n)
             where i.callback_url is not null
               -- an invoice may name the events its callback takes (Kibble's: paid, partial)
               and (i.metadata->'callback_events' is null or i.metadata->'callback_events' ? ev.event)) d
     order by d.n, d.kind, d.endpoint_id;
  end if;
end
$$;

-- The create path: the row takes the prepared lines as they are; the status triggers pass NEW (issue 24)
create or replace function invoices.create_invoice(
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

create or replace function invoices_internal.invoice_before_update() returns trigger
language plpgsql
as $$
declare
  t text[];
begin
  if new.id <> old.id or new.merchant_id <> old.merchant_id or new.invoice_number <> old.invoice_number
     or new.number_seq <> old.number_seq or new.slug <> old.slug or new.created_at <> old.created_at then
    raise exception 'invoice % cannot change its identity (id, merchant, number, slug)', old.invoice_number
      using errcode = '23514';
  end if;
  if old.status <> 'draft' and (new.currency, new.subtotal, new.discount_amount, new.tax_rate,
                                new.tax_amount, new.total)
      is distinct from (old.currency, old.subtotal, old.discount_amount, old.tax_rate,
                        old.tax_amount, old.total) then
    raise exception 'invoice % is %: its amounts are locked', old.invoice_number, old.status
      using errcode = '23514', hint = 'only draft invoices can change their amounts';
  end if;
  -- a statement that gives updated_at (the functions that change a status give now()) stamps
  -- the row with it: on Citus that is the coordinator's time, the one the transaction's other
  -- rows carry (quotes, the returned object), not the time this shard's transaction began
  if new.updated_at is not distinct from old.updated_at then
    new.updated_at := now();
  end if;
  if new.status is distinct from old.status then
    t := invoices_internal.check_transition(old.status, new.status);
    case t[1]
      when 'finalized_at' then new.finalized_at := new.updated_at;
      when 'partially_paid_at' then new.partially_paid_at := new.updated_at;
      when 'paid_at' then new.paid_at := new.updated_at;
      when 'confirmed_at' then new.confirmed_at := new.updated_at;
      when 'expired_at' then new.expired_at := new.updated_at;
      when 'overdue_at' then new.overdue_at := new.updated_at;
      when 'cancelled_at' then new.cancelled_at := new.updated_at;
      else null;
    end case;
    -- the audit row and the outbox, in the same transaction (one statement)
    perform invoices_internal.emit_events(new, array[t[2]], null, array[old.status], array[new.status]);
    -- expiry, cancellation and confirmation release the deposit address after its pause (the
    -- invoice's pause_minutes, else invoices.address_pause_minutes: a day), so a late payment
    -- to it still finds its invoice instead of the address's next holder
    -- (the invoice keeps showing deposit_address; address_id goes, so an invoice revived by
    -- a late payment or a reorg never claims an address the carousel has handed on)
    if new.status in ('expired', 'cancelled', 'confirmed') and old.address_id is not null then
      perform invoices_internal.release_address(new.merchant_id, new.id, old.address_id,
        coalesce(new.pause_minutes, current_setting('invoices.address_pause_minutes')::int));
      new.address_id := null;
    end if;
  end if;
  perform invoices_internal.check_invoice_row(new);
  return new;
end
$$;

create or replace function invoices_internal.invoice_before_insert() returns trigger
language plpgsql
as $$
begin
  if new.status = 'pending' then
    new.finalized_at := new.created_at;   -- draft -> pending, always legal (the statement's time)
  elsif new.status <> 'draft' then
    raise exception 'a new invoice starts as draft, not %', new.status
      using errcode = '23514', hint = 'create it, then call invoices.finalize_invoice';
  end if;
  perform invoices_internal.check_invoice_row(new);
  if new.status = 'pending' then
    perform invoices_internal.emit_events(new, '{invoice.created,invoice.finalized}', null,
                                          '{NULL,draft}', '{draft,pending}');
  else
    perform invoices_internal.emit_events(new, '{invoice.created}', null, '{NULL}', '{draft}');
  end if;
  return new;
end
$$;

-- The status triggers hand the helpers the table's row type again (on Citus new is the shard's)
create or replace function invoices_internal.invoice_before_update() returns trigger
language plpgsql
as $$
declare
  t text[];
begin
  if new.id <> old.id or new.merchant_id <> old.merchant_id or new.invoice_number <> old.invoice_number
     or new.number_seq <> old.number_seq or new.slug <> old.slug or new.created_at <> old.created_at then
    raise exception 'invoice % cannot change its identity (id, merchant, number, slug)', old.invoice_number
      using errcode = '23514';
  end if;
  if old.status <> 'draft' and (new.currency, new.subtotal, new.discount_amount, new.tax_rate,
                                new.tax_amount, new.total)
      is distinct from (old.currency, old.subtotal, old.discount_amount, old.tax_rate,
                        old.tax_amount, old.total) then
    raise exception 'invoice % is %: its amounts are locked', old.invoice_number, old.status
      using errcode = '23514', hint = 'only draft invoices can change their amounts';
  end if;
  -- a statement that gives updated_at (the functions that change a status give now()) stamps
  -- the row with it: on Citus that is the coordinator's time, the one the transaction's other
  -- rows carry (quotes, the returned object), not the time this shard's transaction began
  if new.updated_at is not distinct from old.updated_at then
    new.updated_at := now();
  end if;
  if new.status is distinct from old.status then
    t := invoices_internal.check_transition(old.status, new.status);
    case t[1]
      when 'finalized_at' then new.finalized_at := new.updated_at;
      when 'partially_paid_at' then new.partially_paid_at := new.updated_at;
      when 'paid_at' then new.paid_at := new.updated_at;
      when 'confirmed_at' then new.confirmed_at := new.updated_at;
      when 'expired_at' then new.expired_at := new.updated_at;
      when 'overdue_at' then new.overdue_at := new.updated_at;
      when 'cancelled_at' then new.cancelled_at := new.updated_at;
      else null;
    end case;
    -- the audit row and the outbox, in the same transaction (one statement)
    perform invoices_internal.emit_events(row(new.*)::invoices_internal.invoices, array[t[2]], null, array[old.status], array[new.status]);
    -- expiry, cancellation and confirmation release the deposit address after its pause (the
    -- invoice's pause_minutes, else invoices.address_pause_minutes: a day), so a late payment
    -- to it still finds its invoice instead of the address's next holder
    -- (the invoice keeps showing deposit_address; address_id goes, so an invoice revived by
    -- a late payment or a reorg never claims an address the carousel has handed on)
    if new.status in ('expired', 'cancelled', 'confirmed') and old.address_id is not null then
      perform invoices_internal.release_address(new.merchant_id, new.id, old.address_id,
        coalesce(new.pause_minutes, current_setting('invoices.address_pause_minutes')::int));
      new.address_id := null;
    end if;
  end if;
  perform invoices_internal.check_invoice_row(row(new.*)::invoices_internal.invoices);
  return new;
end
$$;

create or replace function invoices_internal.invoice_before_insert() returns trigger
language plpgsql
as $$
begin
  if new.status = 'pending' then
    new.finalized_at := new.created_at;   -- draft -> pending, always legal (the statement's time)
  elsif new.status <> 'draft' then
    raise exception 'a new invoice starts as draft, not %', new.status
      using errcode = '23514', hint = 'create it, then call invoices.finalize_invoice';
  end if;
  perform invoices_internal.check_invoice_row(row(new.*)::invoices_internal.invoices);
  if new.status = 'pending' then
    perform invoices_internal.emit_events(row(new.*)::invoices_internal.invoices, '{invoice.created,invoice.finalized}', null,
                                          '{NULL,draft}', '{draft,pending}');
  else
    perform invoices_internal.emit_events(row(new.*)::invoices_internal.invoices, '{invoice.created}', null, '{NULL}', '{draft}');
  end if;
  return new;
end
$$;

-- issue 24: the watched addresses leave the poll input (the worker reads them as text[])
create or replace function invoices_internal.chain_poll_input(chain text) returns jsonb
language plpgsql stable
as $$
declare
  c invoices_internal.chains;
  recent jsonb;
  rescan boolean;
begin
  -- one statement per question (on Citus: the chain's rows are on every node, the addresses
  -- and assignments on the workers, and a subquery may not mix the two)
  select * into c from invoices_internal.chains x where x.id = chain_poll_input.chain;
  if not found then
    return null;
  end if;
  select coalesce(jsonb_agg(jsonb_build_object('height', b.height, 'hash', b.hash) order by b.height), '[]'::jsonb)
    into recent from invoices_internal.chain_blocks b where b.chain = c.id;
  rescan := c.last_watch_at is not null and exists (
    select 1 from invoices_internal.address_assignments x where x.assigned_at > c.last_watch_at - interval '10 seconds');
  return jsonb_build_object(
    'cursor', case when c.cursor_height is not null
                   then jsonb_build_object('height', c.cursor_height, 'hash', c.cursor_hash) end,
    'recent', recent,
    'start_height', c.start_height,
    'max_blocks', c.max_blocks_per_poll,
    'confirmations', c.confirmations,
    'watch_at', now(),
    'rescan_from', case when rescan then c.last_scan_from end);
end
$$;

-- issue 25: the journal for accountants
-- The books, double entry: what an accountant imports at month end (issue 25). Each entry is
-- balanced (its debits equal its credits, in its currency):
--   invoice       when finalized: Dr accounts_receivable total; Cr revenue (total - tax),
--                 Cr tax_payable tax
--   cancellation  a finalized invoice cancelled: the invoice entry reversed
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
         i.finalized_at, i.cancelled_at
    from invoices_internal.invoices i
   where i.finalized_at is not null
     and i.merchant_id = any ((select invoices_internal.readable_merchants('journal_entries', current_user) from invoices_internal.session_scope)::uuid[])
), paid as (
  select p.merchant_id, p.id, p.invoice_id, i.invoice_number, p.asset, p.amount, p.chain, p.txid,
         coalesce(p.confirmed_at, p.detected_at) as at,
         coalesce(i.currency, p.asset) as currency, coalesce(cur.exponent, 18) as exponent,
         i.total, i.asset_amount as due, i.rate as quote_rate,
         (i.id is not null and i.status not in ('draft', 'cancelled') and p.asset = i.asset
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
  select i.merchant_id, 'cancellation:' || i.id, i.cancelled_at, 'cancellation', i.id, i.invoice_number, l.*,
         i.currency, null, null, 'invoice ' || i.invoice_number || ' cancelled'
    from inv i,
         lateral (values (1, 'revenue', i.total - i.tax_amount, 0::numeric),
                         (2, 'tax_payable', i.tax_amount, 0),
                         (3, 'accounts_receivable', 0, i.total)) l(line, account, debit, credit)
   where i.status = 'cancelled' and i.cancelled_at is not null
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
  'Double-entry journal of the current merchant: for each finalized invoice (Dr accounts_receivable, Cr revenue and tax_payable), its cancellation, each confirmed payment at the quoted value (Dr crypto:<asset>, Cr accounts_receivable, Cr customer_credit for an over-payment), its FX difference at the rate observed at confirmation (fx_gain / fx_loss) and unapplied receipts. Every entry_id balances: sum(debit) = sum(credit), in its currency. Export as CSV with Accept: text/csv.';
insert into invoices_internal.access_rules (kind, object, scope) values ('view', 'journal_entries', 'read');
grant select on invoices.journal_entries to invoices_admin;
grant select on invoices.journal_entries to invoices_api;

-- issue 25: reminders (dunning)
alter table invoices_internal.merchants
  add column reminder_days integer[] not null default '{-3,0,7}',
  add column reminder_time time not null default '09:00',
  add column time_zone text not null default 'UTC';
alter table invoices_internal.emails
  add column kind text not null default 'invoice' check (kind in ('invoice', 'reminder')),
  add column reminder_days integer check ((kind = 'reminder') = (reminder_days is not null));
create table invoices_internal.invoice_reminders (
  merchant_id uuid not null,
  invoice_id  uuid not null,
  days        integer not null,          -- the schedule entry
  due_at      timestamptz not null,      -- when it fell due
  email_id    bigint not null,
  created_at  timestamptz not null default now(),
  primary key (merchant_id, invoice_id, days),
  foreign key (merchant_id, invoice_id) references invoices_internal.invoices (merchant_id, id)
);
select pg_catalog.pg_extension_config_dump('invoices_internal.invoice_reminders', '');
revoke all on invoices_internal.invoice_reminders from public;
alter table invoices_internal.invoice_reminders enable row level security;
create policy merchant_scope on invoices_internal.invoice_reminders using (invoices_internal.may_see(merchant_id));
create or replace function invoices.set_reminder_schedule(days integer[], send_at time default null, time_zone text default null)
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('set_reminder_schedule');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  errors jsonb := '[]';
  m record;
begin
  if days is null or array_ndims(days) > 1 or cardinality(days) > 10 or array_position(days, null) is not null
     or exists (select 1 from unnest(days) d where d < -90 or d > 365)
     or (select count(distinct d) from unnest(days) d) <> cardinality(days) then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'days', 'message',
      'must list at most 10 distinct whole days from -90 to 365 (relative to the due date; [] turns reminders off)'));
  end if;
  if time_zone is not null and not exists (select 1 from pg_catalog.pg_timezone_names z where z.name = set_reminder_schedule.time_zone) then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'time_zone', 'message',
      'must be an IANA time zone name, such as Europe/Berlin or America/New_York'));
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023', 'invalid reminder schedule', jsonb_build_object('errors', errors)::text,
      'set_reminder_schedule(''{-3,0,7}'', ''09:00'', ''Europe/Berlin'')');
  end if;
  update invoices_internal.merchants x
     set reminder_days = (select coalesce(array_agg(d order by d), '{}') from unnest(days) d),
         reminder_time = coalesce(send_at, x.reminder_time),
         time_zone = coalesce(set_reminder_schedule.time_zone, x.time_zone)
   where x.id = mid
  returning x.reminder_days, x.reminder_time, x.time_zone into m;
  return jsonb_build_object('merchant_id', mid, 'reminder_days', to_jsonb(m.reminder_days),
                            'reminder_time', m.reminder_time, 'time_zone', m.time_zone);
end
$$;

create or replace function invoices_internal.send_due_reminders(max_queued integer default 500) returns jsonb
language plpgsql volatile
as $$
declare
  k record;
  g record;
  n integer;
  e invoices_internal.emails;
  queued integer := 0;
  withdrawn integer := 0;
begin
  for k in
    select i.merchant_id, i.id, i.customer_email, r.days, r.due_at
      from invoices_internal.invoices i
      join invoices_internal.merchants m on m.id = i.merchant_id
      cross join lateral (
        select d as days, (i.due_date + d + m.reminder_time) at time zone m.time_zone as due_at
          from unnest(m.reminder_days) d
         where (i.due_date + d + m.reminder_time) at time zone m.time_zone <= now()
           and (i.due_date + d + m.reminder_time) at time zone m.time_zone > i.finalized_at
         order by d desc
         limit 1) r
     where i.status in ('pending', 'partial', 'overdue') and i.due_date is not null
       and i.due_date > current_date - 400 and i.sent_at is not null and i.customer_email is not null
       and not exists (select 1 from invoices_internal.invoice_reminders x
                        where x.merchant_id = i.merchant_id and x.invoice_id = i.id and x.days >= r.days)
     limit max_queued
  loop
    -- each statement names its merchant (on Citus: one shard); the reminder's row first, so a
    -- concurrent sweep (or a retry of this one) finds it taken and queues nothing
    insert into invoices_internal.emails (merchant_id, invoice_id, recipient, max_attempts, kind, reminder_days)
    values (k.merchant_id, k.id, k.customer_email, invoices_internal.retry_count() + 1, 'reminder', k.days)
    returning * into e;
    insert into invoices_internal.invoice_reminders (merchant_id, invoice_id, days, due_at, email_id)
    values (k.merchant_id, k.id, k.days, k.due_at, e.id)
    on conflict do nothing;
    if found then
      queued := queued + 1;
    else
      delete from invoices_internal.emails x where x.merchant_id = k.merchant_id and x.id = e.id;
    end if;
  end loop;
  -- withdrawn: found without locks, then written per merchant (on Citus: one shard each)
  for g in select x.merchant_id, array_agg(x.id) as ids
             from invoices_internal.emails x
             join invoices_internal.invoices i on i.merchant_id = x.merchant_id and i.id = x.invoice_id
            where x.kind = 'reminder' and x.status in ('queued', 'failed')
              and i.status not in ('pending', 'partial', 'overdue')
            group by x.merchant_id
  loop
    update invoices_internal.emails x
       set status = 'dead', lease_until = null, last_error = 'withdrawn: the invoice is no longer open'
     where x.merchant_id = g.merchant_id and x.id = any (g.ids) and x.status in ('queued', 'failed');
    get diagnostics n = row_count;
    withdrawn := withdrawn + n;
  end loop;
  return jsonb_build_object('queued', queued, 'withdrawn', withdrawn);
end
$$;

create or replace function invoices_internal.claim_emails(n integer, lease_seconds integer)
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
      returning e.merchant_id, e.id, e.recipient, e.invoice_id, e.reminder_days)
    -- a reminder's document says so (reminder_days): the message is a reminder's
    select c.merchant_id, c.id, c.recipient, coalesce(i.merchant_snapshot ->> 'name', ''),
           d.doc || case when c.reminder_days is not null
                         then jsonb_build_object('reminder_days', c.reminder_days) else '{}' end,
           invoices_internal.render_invoice_pdf(d.doc)
      from claimed c
      join invoices_internal.invoices i on i.merchant_id = g.mid and i.id = c.invoice_id
      cross join lateral (select invoices_internal.invoice_document(g.mid, c.invoice_id) as doc) d;
  end loop;
end
$$;

create or replace function invoices_internal.record_email(mid uuid, email_id bigint, error text, permanent boolean, relay_response text)
returns void
language plpgsql volatile
as $$
declare
  e invoices_internal.emails;
  inv invoices_internal.invoices;
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
    if e.kind = 'reminder' then
      -- (read first: on Citus a function that writes must not run inside a distributed query)
      select * into inv from invoices_internal.invoices i where i.merchant_id = mid and i.id = e.invoice_id;
      perform invoices_internal.emit_events(inv, '{invoice.reminder_sent}');
    end if;
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

create or replace function invoices.create_webhook_endpoint(url text, events text[] default '{*}', description text default null,
                                                  format text default 'invoices')
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_webhook_endpoint');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  known text[] := array['*', 'invoice.created', 'invoice.finalized', 'invoice.viewed', 'invoice.partial',
                        'invoice.paid', 'invoice.confirmed', 'invoice.expired', 'invoice.overdue',
                        'invoice.cancelled', 'invoice.reverted', 'invoice.reminder_sent', 'payment.received', 'payment.confirmed', 'payment.reverted'];
  errors jsonb := '[]';
  problem text;
  e invoices_internal.webhook_endpoints;
begin
  problem := coalesce(invoices_internal.destination_problem(url), case when url is null then 'is required' end);
  if problem is not null then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'url', 'message', problem));
  end if;
  if events is null or cardinality(events) = 0 or not (events <@ known) then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'events', 'message',
      'must list events among ' || array_to_string(known, ', ')));
  end if;
  if format is null or format not in ('invoices', 'living_invoices', 'btpay') then
    errors := errors || '[{"field": "format", "message": "must be invoices, living_invoices or btpay"}]';
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023',
      pg_catalog.format('invalid webhook endpoint: %s', (select string_agg(x->>'field', ', ') from jsonb_array_elements(errors) x)),
      jsonb_build_object('errors', errors)::text, 'create_webhook_endpoint(''https://example.com/hooks'', ''{invoice.paid}'')');
  end if;
  insert into invoices_internal.webhook_endpoints (merchant_id, url, events, description, secret, format)
  values (mid, url, events, description, invoices_internal.new_webhook_secret(), create_webhook_endpoint.format)
  returning * into e;
  return jsonb_build_object('id', e.id, 'url', e.url, 'events', to_jsonb(e.events), 'description', e.description,
                            'active', e.active, 'created_at', e.created_at, 'format', e.format, 'secret', e.secret);
end
$$;

create or replace view invoices.emails with (security_barrier) as
select e.merchant_id, e.id, e.invoice_id, i.invoice_number, e.recipient as "to", e.status, e.attempts,
       e.max_attempts, e.next_attempt_at, e.last_error, e.relay_response, e.created_at, e.sent_at,
       e.kind, e.reminder_days
  from invoices_internal.emails e
  join invoices_internal.invoices i on i.merchant_id = e.merchant_id and i.id = e.invoice_id
 where e.merchant_id = any ((select invoices_internal.readable_merchants('emails', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices.invoice_reminders with (security_barrier) as
select r.merchant_id, r.invoice_id, i.invoice_number, r.days, r.due_at, r.email_id, e.recipient as "to",
       e.status as email_status, e.sent_at, r.created_at
  from invoices_internal.invoice_reminders r
  join invoices_internal.invoices i on i.merchant_id = r.merchant_id and i.id = r.invoice_id
  join invoices_internal.emails e on e.merchant_id = r.merchant_id and e.id = r.email_id
 where r.merchant_id = any ((select invoices_internal.readable_merchants('invoice_reminders', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices_internal.distribution_plan as
select p.table_name, p.kind, p.distribution_column, p.colocate_with, p.position
  from (values
    -- reference: small, global, read by joins with tenant tables on every node
    ('invoices_internal.currencies'::text,  'reference'::text, null::text, null::text, 10),
    ('invoices_internal.chains',            'reference', null, null, 20),
    ('invoices_internal.chain_blocks',      'reference', null, null, 30),
    ('invoices_internal.rate_sources',      'reference', null, null, 40),
    ('invoices_internal.rate_observations', 'reference', null, null, 50),
    ('invoices_internal.server_secrets',    'reference', null, null, 60),
    ('invoices_internal.access_rules',      'reference', null, null, 65),
    -- tenant: the colocation anchor, then every table carrying merchant_id
    ('invoices_internal.merchants',           'tenant', 'id',          null, 100),
    ('invoices_internal.invoices',            'tenant', 'merchant_id', 'invoices_internal.merchants', 110),
    ('invoices_internal.invoice_lines',       'tenant', 'merchant_id', 'invoices_internal.merchants', 120),
    ('invoices_internal.quotes',              'tenant', 'merchant_id', 'invoices_internal.merchants', 130),
    ('invoices_internal.audit_log',           'tenant', 'merchant_id', 'invoices_internal.merchants', 140),
    ('invoices_internal.api_keys',            'tenant', 'merchant_id', 'invoices_internal.merchants', 150),
    ('invoices_internal.idempotency_keys',    'tenant', 'merchant_id', 'invoices_internal.merchants', 160),
    ('invoices_internal.wallets',             'tenant', 'merchant_id', 'invoices_internal.merchants', 170),
    ('invoices_internal.addresses',           'tenant', 'merchant_id', 'invoices_internal.merchants', 180),
    ('invoices_internal.address_assignments', 'tenant', 'merchant_id', 'invoices_internal.merchants', 190),
    ('invoices_internal.events',              'tenant', 'merchant_id', 'invoices_internal.merchants', 200),
    ('invoices_internal.webhook_endpoints',   'tenant', 'merchant_id', 'invoices_internal.merchants', 210),
    ('invoices_internal.webhook_deliveries',  'tenant', 'merchant_id', 'invoices_internal.merchants', 220),
    ('invoices_internal.webhook_attempts',    'tenant', 'merchant_id', 'invoices_internal.merchants', 230),
    ('invoices_internal.payments',            'tenant', 'merchant_id', 'invoices_internal.merchants', 240),
    ('invoices_internal.payment_links',       'tenant', 'merchant_id', 'invoices_internal.merchants', 250),
    ('invoices_internal.emails',              'tenant', 'merchant_id', 'invoices_internal.merchants', 260),
    ('invoices_internal.invoice_reminders',   'tenant', 'merchant_id', 'invoices_internal.merchants', 270),
    -- routing: each in a colocation group of its own (colocate_with null = 'none')
    ('invoices_internal.invoice_slugs',       'routing', 'slug',     null, 305),
    ('invoices_internal.payment_link_slugs',  'routing', 'slug',     null, 310),
    ('invoices_internal.api_key_hashes',      'routing', 'key_hash', null, 320),
    ('invoices_internal.wallet_keys',         'routing', 'first_address', null, 330),
    -- local: written by the coordinator's background worker several times a second, read
    -- only by invoices.worker_status; replicating it to every node would buy nothing
    ('invoices_internal.worker_tasks',        'local', null, null, 900),
    -- local: the views' merchant filter reads it, so that filter runs in the caller's session
    ('invoices_internal.session_scope',       'local', null, null, 910)
  ) as p(table_name, kind, distribution_column, colocate_with, position);
comment on function invoices.set_reminder_schedule(integer[], time, text) is
  'The current merchant''s reminder e-mails: days relative to the due date (negative: before; default {-3,0,7}; {} turns them off), sent at send_at (default 09:00) in time_zone (an IANA name; default UTC). Each open invoice that was e-mailed gets each reminder once; after downtime only the latest one due. Returns {merchant_id, reminder_days, reminder_time, time_zone}.';
comment on view invoices.invoice_reminders is
  'Reminder e-mails of the current merchant''s invoices: the schedule entry (days relative to the due date), when it fell due, the e-mail and its status (sent, or dead when withdrawn because the invoice was paid or cancelled first).';
comment on view invoices.emails is
  'Invoice e-mails of the current merchant: recipient, status (queued, sending, sent, failed = waiting for a retry, dead), attempts, the last error and the relay''s answer; kind invoice or reminder (reminder_days: its schedule entry).';
revoke execute on function invoices.set_reminder_schedule(integer[], time, text) from public;
revoke execute on function invoices_internal.send_due_reminders(integer) from public;
insert into invoices_internal.access_rules (kind, object, scope) values
  ('function', 'set_reminder_schedule', 'admin'), ('view', 'invoice_reminders', 'read');
grant select on invoices.invoice_reminders to invoices_admin;
grant execute on function invoices.set_reminder_schedule(integer[], time, text) to invoices_admin;
grant select on invoices.invoice_reminders to invoices_api;
grant execute on function invoices.set_reminder_schedule(integer[], time, text) to invoices_api;

-- issue 25: recurring invoices
create table invoices_internal.schedules (
  merchant_id     uuid not null references invoices_internal.merchants (id),
  id              uuid not null default invoices_internal.uuid_v7(),
  status          text not null default 'active' check (status in ('active', 'paused', 'cancelled', 'completed')),
  frequency       text not null check (frequency in ('daily', 'weekly', 'monthly')),
  every           integer not null default 1 check (every >= 1),
  day_of_month    integer check (day_of_month between 1 and 31),
  start_date      date not null,
  end_date        date,
  max_invoices    integer check (max_invoices between 1 and 10000),
  send            boolean not null default true,
  due_days        integer check (due_days between 0 and 365),
  template        jsonb not null,             -- create_invoice's arguments for every run
  invoices_made   integer not null default 0,
  next_index      integer not null default 0, -- the position of the next run (0 = the first)
  next_run_date   date,                       -- null once it ended
  next_run_at     timestamptz,
  last_invoice_id uuid,
  last_error      text,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  primary key (merchant_id, id),
  check (end_date is null or end_date >= start_date)
);

create index schedules_due_idx on invoices_internal.schedules (next_run_at) where status = 'active';

create table invoices_internal.schedule_runs (
  merchant_id uuid not null,
  schedule_id uuid not null,
  run         integer not null,          -- 1 = the schedule's first invoice
  run_date    date not null,
  invoice_id  uuid not null,
  created_at  timestamptz not null default now(),
  primary key (merchant_id, schedule_id, run),
  foreign key (merchant_id, schedule_id) references invoices_internal.schedules (merchant_id, id),
  foreign key (merchant_id, invoice_id) references invoices_internal.invoices (merchant_id, id)
);
select pg_catalog.pg_extension_config_dump('invoices_internal.schedules', '');
select pg_catalog.pg_extension_config_dump('invoices_internal.schedule_runs', '');
revoke all on invoices_internal.schedules, invoices_internal.schedule_runs from public;
alter table invoices_internal.schedules enable row level security;
create policy merchant_scope on invoices_internal.schedules using (invoices_internal.may_see(merchant_id));
alter table invoices_internal.schedule_runs enable row level security;
create policy merchant_scope on invoices_internal.schedule_runs using (invoices_internal.may_see(merchant_id));
CREATE  FUNCTION invoices_internal."check_schedule_rule"(
	"frequency" TEXT, /* & str */
	"every" INT, /* Option < i32 > */
	"day_of_month" INT, /* Option < i32 > */
	"start_date" date /* Date */
) RETURNS jsonb /* Option < JsonB > */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_schedule_rule_wrapper';
revoke execute on function invoices_internal.check_schedule_rule(text, integer, integer, date) from public;
CREATE  FUNCTION invoices_internal."schedule_run_date"(
	"frequency" TEXT, /* & str */
	"every" INT, /* i32 */
	"day_of_month" INT, /* Option < i32 > */
	"start_date" date, /* Date */
	"n" INT /* i32 */
) RETURNS date /* Option < Date > */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'schedule_run_date_wrapper';
revoke execute on function invoices_internal.schedule_run_date(text, integer, integer, date, integer) from public;
create or replace function invoices_internal.emit_merchant_events(mid uuid, events text[], data jsonb, inv_id uuid default null)
returns void
language plpgsql volatile
as $$
declare
  ids uuid[] := '{}';
begin
  for n in 1 .. cardinality(events) loop
    ids := ids || invoices_internal.uuid_v7();
  end loop;
  insert into invoices_internal.events (merchant_id, id, event, invoice_id, data)
  select mid, e.id, e.event, inv_id, data from unnest(ids, events) e(id, event);
  insert into invoices_internal.webhook_deliveries (merchant_id, event_id, endpoint_id, url, secret, max_retries)
  select mid, ev.id, w.id, w.url, null, invoices_internal.retry_count()
    from unnest(ids, events) with ordinality ev(id, event, n)
    join invoices_internal.webhook_endpoints w
      on w.merchant_id = mid and w.active and w.format = 'invoices' and ('*' = any (w.events) or ev.event = any (w.events))
   order by ev.n, w.id;
end
$$;

create or replace function invoices.set_time_zone(time_zone text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('set_time_zone');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
begin
  if time_zone is null or not exists (select 1 from pg_catalog.pg_timezone_names z where z.name = set_time_zone.time_zone) then
    perform invoices_internal.raise('22023', 'invalid time zone',
      '{"errors":[{"field":"time_zone","message":"must be an IANA time zone name, such as Europe/Berlin or America/New_York"}]}',
      'set_time_zone(''Europe/Berlin'')');
  end if;
  update invoices_internal.merchants x set time_zone = set_time_zone.time_zone where x.id = mid;
  -- the active schedules' next runs move to midnight in the new zone
  update invoices_internal.schedules x set next_run_at = x.next_run_date::timestamp at time zone set_time_zone.time_zone
   where x.merchant_id = mid and x.status = 'active';
  return jsonb_build_object('merchant_id', mid, 'time_zone', time_zone);
end
$$;

create or replace function invoices_internal.schedule_date(frequency text, every integer, day_of_month integer, start_date date,
                                                end_date date, max_invoices integer, idx integer, made integer)
returns date
language plpgsql immutable
as $$
declare
  d date;
begin
  if max_invoices is not null and made >= max_invoices then
    return null;
  end if;
  d := invoices_internal.schedule_run_date(frequency, every, day_of_month, start_date, idx);
  if d is null or (end_date is not null and d > end_date) then
    return null;
  end if;
  return d;
end
$$;

create or replace function invoices_internal.schedule_object(s invoices_internal.schedules) returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'id', s.id, 'merchant_id', s.merchant_id, 'status', s.status, 'frequency', s.frequency, 'every', s.every,
    'day_of_month', s.day_of_month, 'start_date', s.start_date, 'end_date', s.end_date,
    'count', s.max_invoices, 'send', s.send, 'due_days', s.due_days, 'template', s.template,
    'invoices_made', s.invoices_made, 'next_run_date', s.next_run_date, 'next_run_at', s.next_run_at,
    'last_invoice_id', s.last_invoice_id, 'last_error', s.last_error,
    'created_at', s.created_at, 'updated_at', s.updated_at)
$$;

create or replace function invoices.create_schedule(
  lines            jsonb,
  frequency        text,
  every            integer default null,
  day_of_month     integer default null,
  start_date       date    default null,
  end_date         date    default null,
  count            integer default null,
  send             boolean default true,
  due_days         integer default null,
  customer_email   text    default null,
  customer_name    text    default null,
  customer_company text    default null,
  customer_address text    default null,
  currency         text    default null,
  tax_rate         numeric default null,
  discount_amount  numeric default null,
  asset            text    default null,
  notes            text    default null,
  metadata         jsonb   default null
) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_schedule');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  m invoices_internal.merchants;
  today date;
  start date;
  template jsonb;
  p jsonb;
  problem jsonb;
  errors jsonb := '[]';
  s invoices_internal.schedules;
begin
  select * into m from invoices_internal.merchants x where x.id = mid;
  today := (now() at time zone m.time_zone)::date;
  start := coalesce(start_date, today);
  problem := invoices_internal.check_schedule_rule(coalesce(frequency, ''), every, day_of_month, start);
  if problem is not null then
    errors := errors || ((problem->'error'->>'detail')::jsonb->'errors');
  end if;
  if start < today then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'start_date',
      'message', format('must not be before today in the merchant''s time zone (%s)', m.time_zone)));
  end if;
  if end_date is not null and end_date < start then
    errors := errors || '[{"field": "end_date", "message": "must not be before start_date"}]';
  end if;
  if count is not null and (count < 1 or count > 10000) then
    errors := errors || '[{"field": "count", "message": "must be from 1 to 10000 invoices"}]';
  end if;
  if due_days is not null and (due_days < 0 or due_days > 365) then
    errors := errors || '[{"field": "due_days", "message": "must be from 0 to 365 days after the run"}]';
  end if;
  if send is null then
    errors := errors || '[{"field": "send", "message": "must be true or false"}]';
  end if;
  -- the template is checked as create_invoice checks an invoice (its fields named the same)
  template := jsonb_strip_nulls(jsonb_build_object(
    'lines', lines, 'currency', coalesce(currency, m.default_currency), 'customer_email', customer_email,
    'customer_name', customer_name, 'customer_company', customer_company, 'customer_address', customer_address,
    'tax_rate', tax_rate, 'discount_amount', discount_amount, 'asset', asset, 'notes', notes, 'metadata', metadata));
  p := invoices_internal.prepare_new_invoice(template || jsonb_build_object('issue_date', start));
  if p ? 'error' then
    errors := errors || coalesce((p->'error'->>'detail')::jsonb->'errors', '[]');
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023', 'invalid schedule', jsonb_build_object('errors', errors)::text,
      'create_schedule(lines => …, frequency => ''monthly'', day_of_month => 1): fix the fields listed in the detail');
  end if;

  insert into invoices_internal.schedules (merchant_id, frequency, every, day_of_month, start_date, end_date,
                                           max_invoices, send, due_days, template)
  values (mid, btrim(frequency), coalesce(every, 1),
          case when btrim(frequency) = 'monthly' then coalesce(day_of_month, extract(day from start)::int) end,
          start, end_date, count, send, due_days, template)
  returning * into s;
  s.next_run_date := invoices_internal.schedule_date(s.frequency, s.every, s.day_of_month, s.start_date, s.end_date, s.max_invoices, 0, 0);
  update invoices_internal.schedules x
     set next_run_date = s.next_run_date,
         next_run_at = s.next_run_date::timestamp at time zone m.time_zone,
         status = case when s.next_run_date is null then 'completed' else x.status end
   where x.merchant_id = mid and x.id = s.id
  returning * into s;
  perform invoices_internal.emit_merchant_events(mid, '{schedule.created}', invoices_internal.schedule_object(s));
  return invoices_internal.schedule_object(s);
end
$$;

create or replace function invoices_internal.lock_schedule(mid uuid, schedule_id text) returns invoices_internal.schedules
language plpgsql volatile
as $$
declare
  s invoices_internal.schedules;
begin
  if schedule_id ~* '^[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}$' then
    select * into s from invoices_internal.schedules x where x.merchant_id = mid and x.id = schedule_id::uuid for update;
  end if;
  if s.id is null then
    perform invoices_internal.raise('P0002', format('schedule "%s" not found', schedule_id),
      '{"errors":[{"field":"id","message":"is not a schedule of this merchant"}]}', 'list them in invoices.schedules');
  end if;
  return s;
end
$$;

create or replace function invoices.pause_schedule(id text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('pause_schedule');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  s invoices_internal.schedules := invoices_internal.lock_schedule(mid, pause_schedule.id);
begin
  if s.status <> 'active' then
    perform invoices_internal.raise('23514', format('the schedule is %s: only an active one can be paused', s.status),
      '{"errors":[{"field":"id","message":"is not active"}]}', null);
  end if;
  update invoices_internal.schedules x set status = 'paused', updated_at = now()
   where x.merchant_id = mid and x.id = s.id returning * into s;
  perform invoices_internal.emit_merchant_events(mid, '{schedule.paused}', invoices_internal.schedule_object(s));
  return invoices_internal.schedule_object(s);
end
$$;

create or replace function invoices.resume_schedule(id text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('resume_schedule');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  s invoices_internal.schedules := invoices_internal.lock_schedule(mid, resume_schedule.id);
  tz text := (select x.time_zone from invoices_internal.merchants x where x.id = mid);
  today date := (now() at time zone tz)::date;
  idx integer;
  d date;
begin
  if s.status <> 'paused' then
    perform invoices_internal.raise('23514', format('the schedule is %s: only a paused one can be resumed', s.status),
      '{"errors":[{"field":"id","message":"is not paused"}]}', null);
  end if;
  -- the runs that fell due while it was paused are skipped
  idx := s.next_index;
  loop
    d := invoices_internal.schedule_date(s.frequency, s.every, s.day_of_month, s.start_date, s.end_date, s.max_invoices, idx, s.invoices_made);
    exit when d is null or d >= today or idx > s.next_index + 100000;
    idx := idx + 1;
  end loop;
  update invoices_internal.schedules x
     set status = case when d is null then 'completed' else 'active' end, next_index = idx, next_run_date = d,
         next_run_at = d::timestamp at time zone tz, updated_at = now()
   where x.merchant_id = mid and x.id = s.id returning * into s;
  perform invoices_internal.emit_merchant_events(mid,
    case when s.status = 'completed' then '{schedule.resumed,schedule.completed}'::text[] else '{schedule.resumed}' end,
    invoices_internal.schedule_object(s));
  return invoices_internal.schedule_object(s);
end
$$;

create or replace function invoices.cancel_schedule(id text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('cancel_schedule');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  s invoices_internal.schedules := invoices_internal.lock_schedule(mid, cancel_schedule.id);
begin
  if s.status in ('cancelled', 'completed') then
    perform invoices_internal.raise('23514', format('the schedule is already %s', s.status),
      '{"errors":[{"field":"id","message":"has ended"}]}', null);
  end if;
  update invoices_internal.schedules x
     set status = 'cancelled', next_run_date = null, next_run_at = null, updated_at = now()
   where x.merchant_id = mid and x.id = s.id returning * into s;
  perform invoices_internal.emit_merchant_events(mid, '{schedule.cancelled}', invoices_internal.schedule_object(s));
  return invoices_internal.schedule_object(s);
end
$$;

create or replace function invoices_internal.run_due_schedules(max_runs integer default 100) returns jsonb
language plpgsql volatile
as $$
declare
  k record;
  s invoices_internal.schedules;
  t jsonb;
  tz text;
  inv jsonb;
  d date;
  made integer := 0;
  failed integer := 0;
begin
  for k in select x.merchant_id, x.id from invoices_internal.schedules x
            where x.status = 'active' and x.next_run_at <= now()
            order by x.next_run_at
            limit max_runs
  loop
    begin
      select * into s from invoices_internal.schedules x
       where x.merchant_id = k.merchant_id and x.id = k.id for update skip locked;
      continue when s.id is null or s.status <> 'active' or s.next_run_at > now();
      perform set_config('invoices.merchant_id', k.merchant_id::text, true);
      t := s.template;
      inv := invoices.create_invoice(
        lines => t->'lines', currency => t->>'currency', customer_email => t->>'customer_email',
        customer_name => t->>'customer_name', customer_company => t->>'customer_company',
        customer_address => t->>'customer_address', tax_rate => (t->>'tax_rate')::numeric,
        discount_amount => (t->>'discount_amount')::numeric, issue_date => s.next_run_date,
        due_date => s.next_run_date + s.due_days, notes => t->>'notes',
        metadata => coalesce(t->'metadata', '{}') || jsonb_build_object('schedule_id', s.id, 'schedule_run', s.invoices_made + 1),
        asset => t->>'asset', send => s.send);
      insert into invoices_internal.schedule_runs (merchant_id, schedule_id, run, run_date, invoice_id)
      values (s.merchant_id, s.id, s.invoices_made + 1, s.next_run_date, (inv->>'id')::uuid);
      tz := (select x.time_zone from invoices_internal.merchants x where x.id = s.merchant_id);
      d := invoices_internal.schedule_date(s.frequency, s.every, s.day_of_month, s.start_date, s.end_date, s.max_invoices, s.next_index + 1, s.invoices_made + 1);
      update invoices_internal.schedules x
         set invoices_made = x.invoices_made + 1, next_index = x.next_index + 1, next_run_date = d,
             next_run_at = d::timestamp at time zone tz, last_invoice_id = (inv->>'id')::uuid, last_error = null,
             status = case when d is null then 'completed' else x.status end, updated_at = now()
       where x.merchant_id = s.merchant_id and x.id = s.id
      returning * into s;
      perform invoices_internal.emit_merchant_events(s.merchant_id,
        case when s.status = 'completed' then '{schedule.invoice_created,schedule.completed}'::text[]
             else '{schedule.invoice_created}' end,
        invoices_internal.schedule_object(s) || jsonb_build_object('invoice', inv - 'lines'), (inv->>'id')::uuid);
      made := made + 1;
    exception when others then
      update invoices_internal.schedules x
         set last_error = left(sqlerrm, 500), next_run_at = now() + interval '10 minutes', updated_at = now()
       where x.merchant_id = k.merchant_id and x.id = k.id;
      failed := failed + 1;
    end;
  end loop;
  return jsonb_build_object('invoices_made', made, 'failed', failed);
end
$$;

create or replace view invoices.schedules with (security_barrier) as
select s.merchant_id, s.id, s.status, s.frequency, s.every, s.day_of_month, s.start_date, s.end_date,
       s.max_invoices as count, s.send, s.due_days, s.template, s.invoices_made, s.next_run_date, s.next_run_at,
       s.last_invoice_id, s.last_error, s.created_at, s.updated_at
  from invoices_internal.schedules s
 where s.merchant_id = any ((select invoices_internal.readable_merchants('schedules', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace view invoices.upcoming_runs with (security_barrier) as
select s.merchant_id, s.id as schedule_id, s.invoices_made + g.k + 1 as run, d.run_date,
       d.run_date::timestamp at time zone m.time_zone as run_at
  from invoices_internal.schedules s
  join invoices_internal.merchants m on m.id = s.merchant_id
  cross join generate_series(0, 4) g(k)
  cross join lateral (select invoices_internal.schedule_date(s.frequency, s.every, s.day_of_month, s.start_date, s.end_date, s.max_invoices,
                                                                  s.next_index + g.k, s.invoices_made + g.k) as run_date) d
 where s.status = 'active' and d.run_date is not null
   and s.merchant_id = any ((select invoices_internal.readable_merchants('upcoming_runs', current_user) from invoices_internal.session_scope)::uuid[]);

create or replace function invoices.create_webhook_endpoint(url text, events text[] default '{*}', description text default null,
                                                  format text default 'invoices')
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_webhook_endpoint');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  known text[] := array['*', 'invoice.created', 'invoice.finalized', 'invoice.viewed', 'invoice.partial',
                        'invoice.paid', 'invoice.confirmed', 'invoice.expired', 'invoice.overdue',
                        'invoice.cancelled', 'invoice.reverted', 'invoice.reminder_sent', 'payment.received', 'payment.confirmed', 'payment.reverted',
                        'schedule.created', 'schedule.invoice_created', 'schedule.paused', 'schedule.resumed',
                        'schedule.cancelled', 'schedule.completed'];
  errors jsonb := '[]';
  problem text;
  e invoices_internal.webhook_endpoints;
begin
  problem := coalesce(invoices_internal.destination_problem(url), case when url is null then 'is required' end);
  if problem is not null then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'url', 'message', problem));
  end if;
  if events is null or cardinality(events) = 0 or not (events <@ known) then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'events', 'message',
      'must list events among ' || array_to_string(known, ', ')));
  end if;
  if format is null or format not in ('invoices', 'living_invoices', 'btpay') then
    errors := errors || '[{"field": "format", "message": "must be invoices, living_invoices or btpay"}]';
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023',
      pg_catalog.format('invalid webhook endpoint: %s', (select string_agg(x->>'field', ', ') from jsonb_array_elements(errors) x)),
      jsonb_build_object('errors', errors)::text, 'create_webhook_endpoint(''https://example.com/hooks'', ''{invoice.paid}'')');
  end if;
  insert into invoices_internal.webhook_endpoints (merchant_id, url, events, description, secret, format)
  values (mid, url, events, description, invoices_internal.new_webhook_secret(), create_webhook_endpoint.format)
  returning * into e;
  return jsonb_build_object('id', e.id, 'url', e.url, 'events', to_jsonb(e.events), 'description', e.description,
                            'active', e.active, 'created_at', e.created_at, 'format', e.format, 'secret', e.secret);
end
$$;

create or replace view invoices_internal.distribution_plan as
select p.table_name, p.kind, p.distribution_column, p.colocate_with, p.position
  from (values
    -- reference: small, global, read by joins with tenant tables on every node
    ('invoices_internal.currencies'::text,  'reference'::text, null::text, null::text, 10),
    ('invoices_internal.chains',            'reference', null, null, 20),
    ('invoices_internal.chain_blocks',      'reference', null, null, 30),
    ('invoices_internal.rate_sources',      'reference', null, null, 40),
    ('invoices_internal.rate_observations', 'reference', null, null, 50),
    ('invoices_internal.server_secrets',    'reference', null, null, 60),
    ('invoices_internal.access_rules',      'reference', null, null, 65),
    -- tenant: the colocation anchor, then every table carrying merchant_id
    ('invoices_internal.merchants',           'tenant', 'id',          null, 100),
    ('invoices_internal.invoices',            'tenant', 'merchant_id', 'invoices_internal.merchants', 110),
    ('invoices_internal.invoice_lines',       'tenant', 'merchant_id', 'invoices_internal.merchants', 120),
    ('invoices_internal.quotes',              'tenant', 'merchant_id', 'invoices_internal.merchants', 130),
    ('invoices_internal.audit_log',           'tenant', 'merchant_id', 'invoices_internal.merchants', 140),
    ('invoices_internal.api_keys',            'tenant', 'merchant_id', 'invoices_internal.merchants', 150),
    ('invoices_internal.idempotency_keys',    'tenant', 'merchant_id', 'invoices_internal.merchants', 160),
    ('invoices_internal.wallets',             'tenant', 'merchant_id', 'invoices_internal.merchants', 170),
    ('invoices_internal.addresses',           'tenant', 'merchant_id', 'invoices_internal.merchants', 180),
    ('invoices_internal.address_assignments', 'tenant', 'merchant_id', 'invoices_internal.merchants', 190),
    ('invoices_internal.events',              'tenant', 'merchant_id', 'invoices_internal.merchants', 200),
    ('invoices_internal.webhook_endpoints',   'tenant', 'merchant_id', 'invoices_internal.merchants', 210),
    ('invoices_internal.webhook_deliveries',  'tenant', 'merchant_id', 'invoices_internal.merchants', 220),
    ('invoices_internal.webhook_attempts',    'tenant', 'merchant_id', 'invoices_internal.merchants', 230),
    ('invoices_internal.payments',            'tenant', 'merchant_id', 'invoices_internal.merchants', 240),
    ('invoices_internal.payment_links',       'tenant', 'merchant_id', 'invoices_internal.merchants', 250),
    ('invoices_internal.emails',              'tenant', 'merchant_id', 'invoices_internal.merchants', 260),
    ('invoices_internal.invoice_reminders',   'tenant', 'merchant_id', 'invoices_internal.merchants', 270),
    ('invoices_internal.schedules',           'tenant', 'merchant_id', 'invoices_internal.merchants', 280),
    ('invoices_internal.schedule_runs',       'tenant', 'merchant_id', 'invoices_internal.merchants', 290),
    -- routing: each in a colocation group of its own (colocate_with null = 'none')
    ('invoices_internal.invoice_slugs',       'routing', 'slug',     null, 305),
    ('invoices_internal.payment_link_slugs',  'routing', 'slug',     null, 310),
    ('invoices_internal.api_key_hashes',      'routing', 'key_hash', null, 320),
    ('invoices_internal.wallet_keys',         'routing', 'first_address', null, 330),
    -- local: written by the coordinator's background worker several times a second, read
    -- only by invoices.worker_status; replicating it to every node would buy nothing
    ('invoices_internal.worker_tasks',        'local', null, null, 900),
    -- local: the views' merchant filter reads it, so that filter runs in the caller's session
    ('invoices_internal.session_scope',       'local', null, null, 910)
  ) as p(table_name, kind, distribution_column, colocate_with, position);
comment on function invoices.set_time_zone(text) is
  'The current merchant''s time zone (an IANA name; default UTC): recurring invoices fall due at midnight there, reminders at their time there. Returns {merchant_id, time_zone}.';
comment on function invoices.create_schedule(jsonb, text, integer, integer, date, date, integer, boolean, integer, text, text, text, text, text, numeric, numeric, text, text, jsonb) is
  'A recurring invoice: the template (lines, customer, currency, tax, discount, asset, notes, metadata: as create_invoice takes them) and the repetition: frequency daily / weekly / monthly, every N of them, day_of_month for monthly (31: the last day of a short month; default the start''s day), from start_date (default today in the merchant''s time zone) to end_date and/or count invoices. Each run falls due at the midnight of its date in the merchant''s time zone; the worker then creates its invoice (issue_date the run''s date, due_date due_days later) exactly once, and finalizes and sends it when send (default true). Events schedule.created, schedule.invoice_created, schedule.completed. Returns the schedule.';
comment on function invoices.pause_schedule(text) is
  'Pause an active schedule: no invoice is made while it is paused (event schedule.paused). Returns the schedule.';
comment on function invoices.resume_schedule(text) is
  'Resume a paused schedule from its next run on or after today (runs that fell due while it was paused are skipped; event schedule.resumed). Returns the schedule.';
comment on function invoices.cancel_schedule(text) is
  'Cancel a schedule for good: no further invoice (the invoices made stay as they are; event schedule.cancelled). Returns the schedule.';
comment on view invoices.schedules is
  'Recurring invoices of the current merchant: the template, the repetition, status (active, paused, cancelled, completed), invoices made so far, the next run''s date and instant, and the last run''s error if it failed (retried ten minutes later).';
comment on view invoices.upcoming_runs is
  'The next five runs of each active schedule of the current merchant (fewer when it ends sooner): the number of the invoice it will make, its date and the instant it falls due (midnight in the merchant''s time zone).';
revoke execute on function invoices_internal.emit_merchant_events(uuid, text[], jsonb, uuid), invoices_internal.schedule_date(text, integer, integer, date, date, integer, integer, integer),
  invoices_internal.schedule_object(invoices_internal.schedules), invoices_internal.lock_schedule(uuid, text),
  invoices_internal.run_due_schedules(integer), invoices.set_time_zone(text),
  invoices.create_schedule(jsonb, text, integer, integer, date, date, integer, boolean, integer, text, text, text, text, text, numeric, numeric, text, text, jsonb),
  invoices.pause_schedule(text), invoices.resume_schedule(text), invoices.cancel_schedule(text) from public;
insert into invoices_internal.access_rules (kind, object, scope) values
  ('function', 'create_schedule', 'write'), ('function', 'pause_schedule', 'write'),
  ('function', 'resume_schedule', 'write'), ('function', 'cancel_schedule', 'write'),
  ('function', 'set_time_zone', 'admin'), ('view', 'schedules', 'read'), ('view', 'upcoming_runs', 'read');
grant execute on function invoices_internal.schedule_date(text, integer, integer, date, date, integer, integer, integer),
  invoices_internal.schedule_run_date(text, integer, integer, date, integer) to public;
grant select on invoices.schedules, invoices.upcoming_runs to invoices_admin;
grant execute on function invoices.create_schedule(jsonb, text, integer, integer, date, date, integer, boolean, integer,
  text, text, text, text, text, numeric, numeric, text, text, jsonb), invoices.pause_schedule(text),
  invoices.resume_schedule(text), invoices.cancel_schedule(text), invoices.set_time_zone(text) to invoices_admin;
grant select on invoices.schedules, invoices.upcoming_runs to invoices_api;
grant execute on function invoices.create_schedule(jsonb, text, integer, integer, date, date, integer, boolean, integer,
  text, text, text, text, text, numeric, numeric, text, text, jsonb), invoices.pause_schedule(text),
  invoices.resume_schedule(text), invoices.cancel_schedule(text), invoices.set_time_zone(text) to invoices_api;

-- issue 25: the quote deadline computed before the UPDATE (the worker's schedules create invoices; Citus rule)
create or replace function invoices_internal.lock_quote(mid uuid, inv_id uuid) returns void
language plpgsql volatile
as $$
declare
  inv invoices_internal.invoices;
  quote_rate numeric;
  sources text[] := '{}';
  asset_exponent int;
  amount numeric;
  deadline timestamptz;
begin
  select * into inv from invoices_internal.invoices where merchant_id = mid and id = inv_id;
  if inv.asset is null then
    return;
  end if;
  -- computed here, not in the UPDATE (Citus: no stable function with arithmetic in a SET list)
  deadline := now() + make_interval(mins => inv.expiry_minutes);
  select exponent into asset_exponent from invoices_internal.currencies where code = inv.asset;
  if inv.asset <> inv.currency then
    select c.rate, c.sources into quote_rate, sources from invoices_internal.current_rate(inv.asset, inv.currency) c;
    if quote_rate is null then
      perform invoices_internal.raise('55000',
        format('no fresh %s/%s rate: invoice %s cannot be quoted', inv.asset, inv.currency, inv.invoice_number),
        jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
          'field', 'asset', 'message', format('no rate for %s in %s younger than %s', inv.asset, inv.currency,
                                             current_setting('invoices.rate_max_age_seconds')))))::text,
        'set one with invoices.set_rate(asset, currency, rate) or add a rate source; the invoice stays a draft');
    end if;
  end if;
  insert into invoices_internal.quotes (merchant_id, invoice_id, asset, currency, amount, rate, rate_sources,
                                        markup_percent, asset_amount, expires_at)
  values (mid, inv_id, inv.asset, inv.currency, inv.total, quote_rate, sources,
          coalesce(inv.markup_percent, 0),
          invoices_internal.quote_asset_amount(inv.total, quote_rate, coalesce(inv.markup_percent, 0), asset_exponent),
          deadline)
  returning quotes.asset_amount into amount;
  -- the invoice shows its latest quote (invoice_rows reads the row alone)
  update invoices_internal.invoices
     set expires_at = deadline, asset_amount = amount, rate = quote_rate
   where merchant_id = mid and id = inv_id;
end
$$;

create or replace function invoices_internal.run_due_schedules(max_runs integer default 100) returns jsonb
language plpgsql volatile
as $$
declare
  k record;
  s invoices_internal.schedules;
  t jsonb;
  tz text;
  inv jsonb;
  d date;
  made integer := 0;
  failed integer := 0;
  retry_at timestamptz;
begin
  for k in select x.merchant_id, x.id from invoices_internal.schedules x
            where x.status = 'active' and x.next_run_at <= now()
            order by x.next_run_at
            limit max_runs
  loop
    begin
      select * into s from invoices_internal.schedules x
       where x.merchant_id = k.merchant_id and x.id = k.id for update skip locked;
      continue when s.id is null or s.status <> 'active' or s.next_run_at > now();
      perform set_config('invoices.merchant_id', k.merchant_id::text, true);
      t := s.template;
      inv := invoices.create_invoice(
        lines => t->'lines', currency => t->>'currency', customer_email => t->>'customer_email',
        customer_name => t->>'customer_name', customer_company => t->>'customer_company',
        customer_address => t->>'customer_address', tax_rate => (t->>'tax_rate')::numeric,
        discount_amount => (t->>'discount_amount')::numeric, issue_date => s.next_run_date,
        due_date => s.next_run_date + s.due_days, notes => t->>'notes',
        metadata => coalesce(t->'metadata', '{}') || jsonb_build_object('schedule_id', s.id, 'schedule_run', s.invoices_made + 1),
        asset => t->>'asset', send => s.send);
      insert into invoices_internal.schedule_runs (merchant_id, schedule_id, run, run_date, invoice_id)
      values (s.merchant_id, s.id, s.invoices_made + 1, s.next_run_date, (inv->>'id')::uuid);
      tz := (select x.time_zone from invoices_internal.merchants x where x.id = s.merchant_id);
      d := invoices_internal.schedule_date(s.frequency, s.every, s.day_of_month, s.start_date, s.end_date, s.max_invoices, s.next_index + 1, s.invoices_made + 1);
      update invoices_internal.schedules x
         set invoices_made = x.invoices_made + 1, next_index = x.next_index + 1, next_run_date = d,
             next_run_at = d::timestamp at time zone tz, last_invoice_id = (inv->>'id')::uuid, last_error = null,
             status = case when d is null then 'completed' else x.status end, updated_at = now()
       where x.merchant_id = s.merchant_id and x.id = s.id
      returning * into s;
      perform invoices_internal.emit_merchant_events(s.merchant_id,
        case when s.status = 'completed' then '{schedule.invoice_created,schedule.completed}'::text[]
             else '{schedule.invoice_created}' end,
        invoices_internal.schedule_object(s) || jsonb_build_object('invoice', inv - 'lines'), (inv->>'id')::uuid);
      made := made + 1;
    exception when others then
      retry_at := now() + interval '10 minutes';
      update invoices_internal.schedules x
         set last_error = left(sqlerrm, 500), next_run_at = retry_at, updated_at = now()
       where x.merchant_id = k.merchant_id and x.id = k.id;
      failed := failed + 1;
    end;
  end loop;
  return jsonb_build_object('invoices_made', made, 'failed', failed);
end
$$;

-- issue 25: void and uncollectible
alter table invoices_internal.invoices
  add column voided_at timestamptz,
  add column marked_uncollectible_at timestamptz,
  add column written_off numeric;
create or replace function invoices_internal.check_invoice_row(i invoices_internal.invoices) returns void
language plpgsql immutable
as $$
declare
  problem text;
begin
  problem := case
    when i.status not in ('draft', 'pending', 'partial', 'paid', 'confirmed', 'expired', 'overdue', 'cancelled',
                          'void', 'uncollectible')
      then format('unknown status %s', i.status)
    when i.number_seq < 1 then 'number_seq must be at least 1'
    when not invoices_internal.is_currency(i.currency) then format('unknown currency %s', i.currency)
    when i.asset is not null and i.asset not in ('BTC', 'ETH', 'USDC', 'KAS')
      then format('asset %s is not one of BTC, ETH, USDC, KAS', i.asset)
    when scale(i.subtotal) <> i.exponent or scale(i.discount_amount) <> i.exponent
         or scale(i.tax_amount) <> i.exponent or scale(i.total) <> i.exponent
      then format('amounts must have the currency''s %s decimals', i.exponent)
    when i.discount_amount < 0 or i.discount_amount > i.subtotal
      then 'discount_amount must be between 0 and the subtotal'
    when i.tax_rate < 0 or i.tax_rate > 100 then 'tax_rate must be between 0 and 100'
    when i.tax_amount <> round((i.subtotal - i.discount_amount) * i.tax_rate / 100, i.exponent)
      then format('tax_amount %s is not (subtotal - discount) x tax_rate / 100 rounded (%s)', i.tax_amount,
                  round((i.subtotal - i.discount_amount) * i.tax_rate / 100, i.exponent))
    when i.total <> i.subtotal - i.discount_amount + i.tax_amount
      then format('total %s is not subtotal - discount + tax (%s)', i.total, i.subtotal - i.discount_amount + i.tax_amount)
    when i.amount_paid < 0 then 'amount_paid must not be negative'
    when i.due_date < i.issue_date then 'due_date must not be before issue_date'
    when jsonb_typeof(i.metadata) <> 'object' then 'metadata must be a JSON object'
    when i.markup_percent <= -100 or i.markup_percent > 100 then 'markup_percent must be above -100 and at most 100'
    when i.confirmations not between 0 and 1000 then 'confirmations must be between 0 and 1000'
    when i.expiry_minutes not between 1 and 43200 then 'expiry_minutes must be between 1 and 43200'
    when i.pause_minutes not between 0 and 43200 then 'pause_minutes must be between 0 and 43200'
    when i.attempts_callback not between 0 and 20 then 'attempts_callback must be between 0 and 20'
  end;
  if problem is not null then
    raise exception 'invoice % is inconsistent: %', i.invoice_number, problem
      using errcode = '23514', hint = 'create and change invoices through the functions of schema invoices';
  end if;
end
$$;

create or replace function invoices_internal.invoice_before_update() returns trigger
language plpgsql
as $$
declare
  t text[];
begin
  if new.id <> old.id or new.merchant_id <> old.merchant_id or new.invoice_number <> old.invoice_number
     or new.number_seq <> old.number_seq or new.slug <> old.slug or new.created_at <> old.created_at then
    raise exception 'invoice % cannot change its identity (id, merchant, number, slug)', old.invoice_number
      using errcode = '23514';
  end if;
  if old.status <> 'draft' and (new.currency, new.subtotal, new.discount_amount, new.tax_rate,
                                new.tax_amount, new.total)
      is distinct from (old.currency, old.subtotal, old.discount_amount, old.tax_rate,
                        old.tax_amount, old.total) then
    raise exception 'invoice % is %: its amounts are locked', old.invoice_number, old.status
      using errcode = '23514', hint = 'only draft invoices can change their amounts';
  end if;
  -- a statement that gives updated_at (the functions that change a status give now()) stamps
  -- the row with it: on Citus that is the coordinator's time, the one the transaction's other
  -- rows carry (quotes, the returned object), not the time this shard's transaction began
  if new.updated_at is not distinct from old.updated_at then
    new.updated_at := now();
  end if;
  if new.status is distinct from old.status then
    t := invoices_internal.check_transition(old.status, new.status);
    case t[1]
      when 'finalized_at' then new.finalized_at := new.updated_at;
      when 'partially_paid_at' then new.partially_paid_at := new.updated_at;
      when 'paid_at' then new.paid_at := new.updated_at;
      when 'confirmed_at' then new.confirmed_at := new.updated_at;
      when 'expired_at' then new.expired_at := new.updated_at;
      when 'overdue_at' then new.overdue_at := new.updated_at;
      when 'cancelled_at' then new.cancelled_at := new.updated_at;
      when 'voided_at' then new.voided_at := new.updated_at;
      when 'marked_uncollectible_at' then new.marked_uncollectible_at := new.updated_at;
      else null;
    end case;
    -- the audit row and the outbox, in the same transaction (one statement)
    perform invoices_internal.emit_events(row(new.*)::invoices_internal.invoices, array[t[2]], null, array[old.status], array[new.status]);
    -- expiry, cancellation and confirmation release the deposit address after its pause (the
    -- invoice's pause_minutes, else invoices.address_pause_minutes: a day), so a late payment
    -- to it still finds its invoice instead of the address's next holder
    -- (the invoice keeps showing deposit_address; address_id goes, so an invoice revived by
    -- a late payment or a reorg never claims an address the carousel has handed on)
    if new.status in ('expired', 'cancelled', 'confirmed', 'void') and old.address_id is not null then
      perform invoices_internal.release_address(new.merchant_id, new.id, old.address_id,
        coalesce(new.pause_minutes, current_setting('invoices.address_pause_minutes')::int));
      new.address_id := null;
    end if;
  end if;
  perform invoices_internal.check_invoice_row(row(new.*)::invoices_internal.invoices);
  return new;
end
$$;

create or replace function invoices.void_invoice(ref text) returns jsonb
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

create or replace function invoices.mark_uncollectible(ref text) returns jsonb
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

create or replace function invoices.create_webhook_endpoint(url text, events text[] default '{*}', description text default null,
                                                  format text default 'invoices')
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_webhook_endpoint');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  known text[] := array['*', 'invoice.created', 'invoice.finalized', 'invoice.viewed', 'invoice.partial',
                        'invoice.paid', 'invoice.confirmed', 'invoice.expired', 'invoice.overdue',
                        'invoice.cancelled', 'invoice.reverted', 'invoice.reminder_sent',
                        'invoice.voided', 'invoice.marked_uncollectible', 'payment.received', 'payment.confirmed', 'payment.reverted',
                        'schedule.created', 'schedule.invoice_created', 'schedule.paused', 'schedule.resumed',
                        'schedule.cancelled', 'schedule.completed'];
  errors jsonb := '[]';
  problem text;
  e invoices_internal.webhook_endpoints;
begin
  problem := coalesce(invoices_internal.destination_problem(url), case when url is null then 'is required' end);
  if problem is not null then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'url', 'message', problem));
  end if;
  if events is null or cardinality(events) = 0 or not (events <@ known) then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'events', 'message',
      'must list events among ' || array_to_string(known, ', ')));
  end if;
  if format is null or format not in ('invoices', 'living_invoices', 'btpay') then
    errors := errors || '[{"field": "format", "message": "must be invoices, living_invoices or btpay"}]';
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023',
      pg_catalog.format('invalid webhook endpoint: %s', (select string_agg(x->>'field', ', ') from jsonb_array_elements(errors) x)),
      jsonb_build_object('errors', errors)::text, 'create_webhook_endpoint(''https://example.com/hooks'', ''{invoice.paid}'')');
  end if;
  insert into invoices_internal.webhook_endpoints (merchant_id, url, events, description, secret, format)
  values (mid, url, events, description, invoices_internal.new_webhook_secret(), create_webhook_endpoint.format)
  returning * into e;
  return jsonb_build_object('id', e.id, 'url', e.url, 'events', to_jsonb(e.events), 'description', e.description,
                            'active', e.active, 'created_at', e.created_at, 'format', e.format, 'secret', e.secret);
end
$$;

create or replace view invoices.journal_entries with (security_barrier) as
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
  select i.merchant_id, 'cancellation:' || i.id, i.cancelled_at, 'cancellation', i.id, i.invoice_number, l.*,
         i.currency, null, null, 'invoice ' || i.invoice_number || ' cancelled'
    from inv i,
         lateral (values (1, 'revenue', i.total - i.tax_amount, 0::numeric),
                         (2, 'tax_payable', i.tax_amount, 0),
                         (3, 'accounts_receivable', 0, i.total)) l(line, account, debit, credit)
   where i.status = 'cancelled' and i.cancelled_at is not null
  union all
  select i.merchant_id, 'void:' || i.id, i.voided_at, 'void', i.id, i.invoice_number, l.*,
         i.currency, null, null, 'invoice ' || i.invoice_number || ' voided'
    from inv i,
         lateral (values (1, 'revenue', i.total - i.tax_amount, 0::numeric),
                         (2, 'tax_payable', i.tax_amount, 0),
                         (3, 'accounts_receivable', 0, i.total)) l(line, account, debit, credit)
   where i.status = 'void' and i.voided_at is not null
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
comment on function invoices.void_invoice(text) is
  'pending/overdue/expired -> void: a finalized invoice issued by mistake, with nothing received (else 23514). It is never edited or deleted: it stays, numbered, marked VOID, its deposit address released; the journal reverses it. Audited; event invoice.voided. Returns the invoice object.';
comment on function invoices.mark_uncollectible(text) is
  'pending/partial/overdue/expired -> uncollectible: the amount still due is written off as bad debt (written_off; the journal books it). A payment in full afterwards still settles it (uncollectible -> paid, and the journal books the recovery); a part payment leaves it written off. Audited; event invoice.marked_uncollectible. Returns the invoice object.';
comment on view invoices.journal_entries is
  'Double-entry journal of the current merchant: for each finalized invoice (Dr accounts_receivable, Cr revenue and tax_payable), its cancellation or void (reversed), its write-off when marked uncollectible (Dr bad_debt) and the recovery if it is paid after all, each confirmed payment at the quoted value (Dr crypto:<asset>, Cr accounts_receivable, Cr customer_credit for an over-payment), its FX difference at the rate observed at confirmation (fx_gain / fx_loss) and unapplied receipts. Every entry_id balances: sum(debit) = sum(credit), in its currency. Export as CSV with Accept: text/csv.';
revoke execute on function invoices.void_invoice(text), invoices.mark_uncollectible(text) from public;
insert into invoices_internal.access_rules (kind, object, scope) values
  ('function', 'void_invoice', 'write'), ('function', 'mark_uncollectible', 'write');
grant execute on function invoices.void_invoice(text), invoices.mark_uncollectible(text) to invoices_admin;
grant execute on function invoices.void_invoice(text), invoices.mark_uncollectible(text) to invoices_api;

-- issue 25: receipts
create or replace function invoices.receipt_pdf(ref text) returns invoices."application/pdf"
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('receipt_pdf');  -- first: the caller's scope
  d record;
  doc jsonb;
  paid jsonb;
begin
  select * into d from invoices_internal.document_invoice(ref);
  doc := invoices_internal.invoice_document(d.merchant_id, d.id);
  if doc ->> 'status' not in ('paid', 'confirmed') then
    perform invoices_internal.raise('23514',
      format('invoice %s is %s: a receipt is for a paid invoice', doc ->> 'invoice_number', doc ->> 'status'),
      '{"errors":[{"field":"ref","message":"is not paid"}]}', 'the receipt is there once the invoice is paid');
  end if;
  select coalesce(jsonb_agg(jsonb_build_object('detected_at', p.detected_at, 'chain', p.chain, 'txid', p.txid,
                                               'asset', p.asset, 'amount', p.amount::text, 'status', p.status)
                            order by p.id), '[]')
    into paid
    from invoices_internal.payments p
   where p.merchant_id = d.merchant_id and p.invoice_id = d.id and p.status <> 'reverted';
  perform set_config('response.headers', json_build_array(
            json_build_object('Content-Disposition', format('inline; filename="receipt-%s.pdf"', doc ->> 'invoice_number')),
            json_build_object('Cache-Control', 'no-store'))::text, true);
  return invoices_internal.render_invoice_pdf(doc || jsonb_build_object('receipt_payments', paid));
end
$$;
comment on function invoices.receipt_pdf(text) is
  'The receipt of a paid (or confirmed) invoice as a PDF: the invoice''s parties, lines and totals, titled RECEIPT, with the payments received (date, chain, transaction id, amount, status) instead of the payment instructions. Like invoice_pdf: the merchant''s own with its key, a finalized one by slug without (the payer''s). An unpaid invoice: 23514 (409).';
revoke execute on function invoices.receipt_pdf(text) from public;
insert into invoices_internal.access_rules (kind, object, scope) values ('function', 'receipt_pdf', 'public_read');
grant execute on function invoices.receipt_pdf(text) to invoices_admin;
grant execute on function invoices.receipt_pdf(text) to invoices_api;

-- review: the journal's cancellation and void entries in one branch
create or replace view invoices.journal_entries with (security_barrier) as
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
