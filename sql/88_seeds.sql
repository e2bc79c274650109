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
-- Needs: 05_errors (raise); 15_tenancy (authorize, check_scope, http_scopes, scope_allows);
--   25_rates_quotes (rates); 40_views (invoices); 50_invoices (create_invoice, finalize_invoice,
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
-- row of invoices.invoices with created_unix (its creation in Unix seconds).
create function invoices_internal.seed_invoice(ref text) returns jsonb
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

create function invoices_internal.seed_v1_list_invoices(params jsonb, query jsonb, body jsonb) returns jsonb
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
