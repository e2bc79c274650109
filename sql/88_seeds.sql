-- ============================================================================================
-- invoices — the seed APIs: Living Invoices, Kibble, BTPay and apiforcrypto, as documented
-- ============================================================================================
-- A shop that integrates with one of the four services switches by changing its base URL. The
-- web front hands every request under /api/ to invoices.seed_request (method, path and query
-- in X-Seed-* headers, the body as text). The route is found in the one routing table
-- (domain::seeds::ROUTES), the route's scope checked, its handler run; the answer is the
-- seed's shape and status code (201 on creation), errors {"error": …} with the bad fields.
-- A failure rolls the handler back: nothing is written. The handlers are thin: they shape the
-- seed's payload (in Rust), call the engine's functions and shape the answer.
--
-- Needs: 05_errors (raise); 10_tables (invoices); 15_tenancy (authorize, check_scope, http_scopes, scope_allows);
--   25_rates_quotes (rates); 40_views (invoice_rows); 50_invoices (create_invoice, finalize_invoice,
--   cancel_invoice, resolve_invoice); 65_webhooks (create_webhook_endpoint,
--   delete_webhook_endpoint, webhook_endpoints); 72_payments (payments); 75_payment_links
--   (create_payment_link, deactivate_payment_link, payment_links)
-- Provides (API): seed_request()
-- Provides (internal): seed_answer(), seed_invoice(), and one seed_<handler>() per route of
--   domain::seeds::ROUTES (seed_v1_create_invoice(), seed_btpay_rates(), …)

-- Sets the response's status (and extra headers, added to the rate-limit headers already set)
-- and returns its body.
create function invoices_internal.seed_answer(status integer, body jsonb, headers jsonb default null)
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

-- One invoice of the current merchant by number, id or slug, as the seeds' shapes read it: a
-- row of invoice_rows with created_unix (its creation in Unix seconds).
create function invoices_internal.seed_invoice(ref text) returns jsonb
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

create function invoices.seed_request(text) returns jsonb
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
comment on function invoices.seed_request(text) is
  'The seed APIs (Living Invoices, Kibble, BTPay, apiforcrypto) as their documents print them: the web front sends every request under /api/ here, with its method, path and query in X-Seed-Method, X-Seed-Path and X-Seed-Query and its body as text. The route comes from one routing table; each route checks its own scope. Answers are the seed''s shapes and status codes; errors are {"error": …} with the bad fields, and write nothing.';

-- Living Invoices and BTPay: /api/v1/invoices ------------------------------------------------

create function invoices_internal.seed_v1_create_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
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

create function invoices_internal.seed_v1_list_invoices(params jsonb, query jsonb, body jsonb) returns jsonb
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

-- BTPay: /api/v1/invoices/<ref> ---------------------------------------------------------------

create function invoices_internal.seed_btpay_get_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
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

create function invoices_internal.seed_btpay_finalize_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  obj jsonb := invoices.finalize_invoice(params->>'ref');
begin
  return jsonb_build_object('status', 200,
    'body', invoices_internal.seed_v1_invoice(invoices_internal.seed_invoice(obj->>'id')));
end
$$;

create function invoices_internal.seed_btpay_invoice_status(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql stable
as $$
begin
  return jsonb_build_object('status', 200,
    'body', invoices_internal.seed_v1_status(invoices_internal.seed_invoice(params->>'ref')));
end
$$;

create function invoices_internal.seed_btpay_cancel_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  obj jsonb := invoices.cancel_invoice(params->>'ref');
begin
  return jsonb_build_object('status', 200, 'body', jsonb_build_object('ok', true, 'status', obj->>'status'));
end
$$;

-- BTPay: payment links, rates, webhooks ------------------------------------------------------

create function invoices_internal.seed_btpay_list_payment_links(params jsonb, query jsonb, body jsonb) returns jsonb
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

create function invoices_internal.seed_btpay_create_payment_link(params jsonb, query jsonb, body jsonb) returns jsonb
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

create function invoices_internal.seed_btpay_deactivate_payment_link(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
begin
  perform invoices.deactivate_payment_link(params->>'slug');
  return jsonb_build_object('status', 200, 'body', jsonb_build_object('ok', true));
end
$$;

-- The median of the fresh sources of each BTC pair.
create function invoices_internal.seed_btpay_rates(params jsonb, query jsonb, body jsonb) returns jsonb
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

create function invoices_internal.seed_btpay_list_webhooks(params jsonb, query jsonb, body jsonb) returns jsonb
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

-- A BTPay endpoint delivers in BTPay's format (X-BTPay-Event, X-BTPay-Signature).
create function invoices_internal.seed_btpay_create_webhook(params jsonb, query jsonb, body jsonb) returns jsonb
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

create function invoices_internal.seed_btpay_delete_webhook(params jsonb, query jsonb, body jsonb) returns jsonb
language plpgsql volatile
as $$
begin
  perform invoices.delete_webhook_endpoint(invoices_internal.seed_btpay_webhook_id(params->>'id'));
  return jsonb_build_object('status', 200, 'body', jsonb_build_object('ok', true));
end
$$;

-- Kibble: /api/invoices -------------------------------------------------------------------------

-- A USDC invoice on the merchant's USDC wallet ("privy": whichever it is; "byo": it must be the
-- bring-your-own address given), with the merchant's name, e-mail and address as the request
-- gives them, finalized at once (its deposit address), and sent unless send_now is false.
create function invoices_internal.seed_kibble_create_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
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

create function invoices_internal.seed_kibble_send_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
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

-- The one route whose answer is not JSON: the web front sends GET /api/invoices/{id}/pdf here
-- (as application/pdf), and the route is found in the same table.
create function invoices.seed_pdf(text) returns invoices."application/pdf"
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
comment on function invoices.seed_pdf(text) is
  'Kibble''s GET /api/invoices/{id}/pdf, as the web front passes it (X-Seed-Path): the invoice''s PDF (invoice_pdf: the merchant''s own with its key, a finalized one by id or slug without), errors as {"error": …} in JSON.';

-- apiforcrypto: /api/v1/wallets -----------------------------------------------------------------

-- The chain an apiforcrypto invoice names, as its answers show it: {id, tokens}.
create function invoices_internal.seed_afc_chain(chain text) returns jsonb
language plpgsql stable
as $$
begin
  return (select coalesce((select jsonb_build_object('id', c.id, 'tokens', c.tokens)
                       from invoices_internal.chains c where c.id = chain), jsonb_build_object('id', chain, 'tokens', '{}'::jsonb)));
end
$$;

-- The invoice's payments, as apiforcrypto's status and txs read them.
create function invoices_internal.seed_afc_payments(mid uuid, inv_id uuid) returns jsonb
language plpgsql stable
as $$
begin
  return (select coalesce(jsonb_agg(jsonb_build_object('txid', p.txid, 'status', p.status, 'amount', p.amount::text)
                              order by p.id), '[]')
      from invoices_internal.payments p where p.merchant_id = mid and p.invoice_id = inv_id);
end
$$;

create function invoices_internal.seed_afc_create_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
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

-- Public: any finalized invoice by its UUID, without the wallet, secret key or callback URL.
create function invoices_internal.seed_afc_get_invoice(params jsonb, query jsonb, body jsonb) returns jsonb
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
