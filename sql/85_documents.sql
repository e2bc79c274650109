-- ============================================================================================
-- invoices — documents: the invoice PDF and the hosted invoice page
-- ============================================================================================
-- Both render in Rust (domain::document) from one jsonb document: the invoice object plus
-- what its payment URI needs (EIP-681 chain id, ERC-20 contract). PostgREST serves them
-- through media-type handlers: a function returning the domain "application/pdf" answers
-- Accept: application/pdf, one returning "text/html" answers a browser.
--
-- Who may see which invoice: a caller with an API key (or act_as in SQL) reads its own invoices
-- by number, id or slug; anyone else reads a finalized invoice by its slug or id, as the
-- public_invoices view allows. The hosted URL <invoices.public_base_url>/i/<slug> is this
-- page: the web server in front of PostgREST maps it to /rpc/hosted_invoice?slug=<slug>
-- (see the README; scripts/setup.sh runs such an nginx).
--
-- Needs: 05_errors (raise); 10_tables (invoices); 12_outbox (emit_events); 15_tenancy
--   (authorize); 50_invoices (document_invoice, invoice_by_slug, invoice_object); 70_chains (chains)
-- Provides (API): "application/pdf, "text/html, invoice_pdf(), receipt_pdf(), hosted_invoice(), invoice_viewed()
-- Provides (internal): invoice_document()

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

create function invoices.invoice_pdf(ref text) returns invoices."application/pdf"
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

comment on function invoices.invoice_pdf(text) is
  'The invoice as a PDF: merchant and customer, number and dates, the line table, subtotal / discount / tax / total, the crypto amount with rate and deadline, the deposit address with a QR code of its payment URI (BIP21 bitcoin:, EIP-681 ethereum: incl. ERC-20 transfer, kaspa:), and a PAID / EXPIRED / CANCELLED stamp. ref: the invoice number, id or slug for the merchant''s key; without a key, the slug (or id) of a finalized invoice. Over HTTP: GET /rpc/invoice_pdf?ref=<slug> with Accept: application/pdf (the pdf_url of the invoice).';

-- The receipt: the paid invoice's document with the payments that paid it (each with its
-- chain and transaction), rendered by the same PDF code, titled RECEIPT.
create function invoices.receipt_pdf(ref text) returns invoices."application/pdf"
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

create function invoices.hosted_invoice(slug text) returns invoices."text/html"
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

comment on function invoices.invoice_viewed(text) is
  'Records that the payer opened the hosted page (the page calls it: POST /rpc/invoice_viewed {"slug": …}). The first call stamps viewed_at and emits invoice.viewed; later calls change nothing. Returns {slug, viewed_at, first_view}.';

-- The pay button (Living Invoices' embed widget): <public_base_url>/widget.js, which the web
-- front maps here. Served to any page (CORS *), cached for five minutes.
create domain invoices."text/javascript" as text;

create function invoices.widget_js() returns invoices."text/javascript"
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
comment on function invoices.widget_js() is
  'The pay button''s script, served as <public_base_url>/widget.js: <script src=".../widget.js" data-invoice="<slug or hosted URL>" data-theme="light|dark|minimal|kaspa"></script>, or LivingInvoices.createButton({invoice, container, theme, text, onPayment, onStatus}). It talks only to the host it came from.';

-- The checkout's "Get a new quote": a payer may requote an expired, unpaid invoice when its
-- merchant allows it (allow_public_requote). Anonymous and rate-limited per client address, like
-- the page itself; the invoice is found by its slug, never by its number.
create function invoices.requote_expired(slug text) returns jsonb
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
comment on function invoices.requote_expired(text) is
  'The checkout''s "Get a new quote": requotes an expired, unpaid invoice by its slug, without a key, when its merchant allows it (allow_public_requote). Returns {slug, status, asset, asset_amount, expires_at}.';

create function invoices.allow_public_requote(allowed boolean) returns jsonb
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
comment on function invoices.allow_public_requote(boolean) is
  'Whether payers of the current merchant may ask for a new quote of an expired, unpaid invoice from its hosted page (requote_expired). Off by default.';
