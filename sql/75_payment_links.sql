-- ============================================================================================
-- invoices — payment links
-- ============================================================================================
-- A payment link is a reusable, public way to get paid (BTPay's payment links): a title, a
-- fixed amount or one the payer chooses, a currency and the asset to pay in. Paying a link
-- creates a finalized invoice of the link's merchant (quote and deposit address included).
--
-- Needs: 05_errors (raise); 10_tables (currencies, merchants); 15_tenancy (authorize, may_read,
--   readable_merchants, require_merchant, session_scope); 50_invoices (create_invoice); 55_gateway
--   (public_lookup_allowed)
-- Provides (API): create_payment_link(), deactivate_payment_link(), pay_payment_link(), payment_links, public_payment_links
-- Provides (internal): payment_links, payment_link_slugs, link_slug(), payment_link_object()

create table invoices_internal.payment_links (
  merchant_id    uuid not null references invoices_internal.merchants (id),
  id             uuid not null default invoices_internal.uuid_v7(),
  slug           text not null check (slug ~ '^[a-z0-9][a-z0-9-]{0,79}$'),
  title          text not null check (length(title) between 1 and 200),
  description    text check (length(description) <= 2000),
  amount         numeric check (amount > 0),        -- null: the payer chooses
  currency       text not null references invoices_internal.currencies (code),
  asset          text check (asset in ('BTC', 'ETH', 'USDC', 'KAS')),
  redirect_url   text check (redirect_url ~ '^https?://'),
  metadata       jsonb not null default '{}'::jsonb,
  active         boolean not null default true,
  invoices_created integer not null default 0,
  created_at     timestamptz not null default now(),
  deactivated_at timestamptz,
  primary key (merchant_id, id)
);

create unique index payment_links_slug_key on invoices_internal.payment_links (merchant_id, slug);

create index payment_links_slug_idx on invoices_internal.payment_links (slug);

-- A link is public and found by its slug alone, so slugs are unique across merchants: the
-- slug's owner lives in a table keyed by the slug (on Citus distributed by slug, one shard per
-- lookup), which keeps merchant_id first in every key and index of payment_links.
create table invoices_internal.payment_link_slugs (
  slug        text primary key,
  merchant_id uuid not null,
  link_id     uuid not null
);

-- "Annual Pro plan!" -> "annual-pro-plan" (-2, -3 … if taken).
create function invoices_internal.link_slug(title text) returns text
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

create function invoices.create_payment_link(
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

comment on function invoices.create_payment_link(text, text, text, numeric, text, text, text, jsonb) is
  'Create a payment link of the current merchant: a title, a fixed amount or null (the payer chooses), the currency (default: the merchant''s), the asset to pay in, a redirect URL after payment. The slug is made from the title unless given. Returns the link with its public URL.';

create function invoices_internal.payment_link_object(l invoices_internal.payment_links) returns jsonb
language sql stable
as $$
  select jsonb_build_object(
    'id', l.id, 'slug', l.slug, 'title', l.title, 'description', l.description,
    'amount', l.amount::text, 'currency', l.currency, 'asset', l.asset, 'redirect_url', l.redirect_url,
    'metadata', l.metadata, 'active', l.active, 'invoices_created', l.invoices_created,
    'url', rtrim(current_setting('invoices.public_base_url', true), '/') || '/public_payment_links?slug=eq.' || l.slug,
    'created_at', l.created_at, 'deactivated_at', l.deactivated_at)
$$;

create function invoices.deactivate_payment_link(slug text) returns jsonb
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

comment on function invoices.deactivate_payment_link(text) is
  'Stop a payment link of the current merchant from taking payments (its invoices stay). Returns the link.';

-- Public: no key needed. The invoice belongs to the link's merchant.
create function invoices.pay_payment_link(slug text, amount numeric default null) returns jsonb
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

comment on function invoices.pay_payment_link(text, numeric) is
  'Public (no key): pay an active payment link. Creates a finalized invoice of the link''s merchant for the fixed amount, or for amount when the payer chooses; returns what the payer needs (amount to pay in the asset, deposit address, deadline, hosted URL).';

create view invoices.payment_links with (security_barrier) as
select l.merchant_id, l.id, l.slug, l.title, l.description, l.amount, l.currency, l.asset, l.redirect_url,
       l.metadata, l.active, l.invoices_created, l.created_at, l.deactivated_at
  from invoices_internal.payment_links l
 where l.merchant_id = any ((select invoices_internal.readable_merchants('payment_links', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.payment_links is
  'Payment links of the current merchant: slug, title, fixed amount (null: the payer chooses), currency, asset, active, how many invoices they created.';

create view invoices.public_payment_links as
select l.slug, l.title, l.description, l.amount, l.currency, l.asset,
       (select m.name from invoices_internal.merchants m where m.id = l.merchant_id) as merchant_name
  from invoices_internal.payment_links l
 where l.active
   and (select invoices_internal.public_lookup_allowed() and invoices_internal.may_read('public_payment_links', current_user)
          from invoices_internal.session_scope);

comment on view invoices.public_payment_links is
  'An active payment link as the payer sees it, readable without an API key by slug: GET /public_payment_links?slug=eq.<slug>. Pay it with POST /rpc/pay_payment_link.';
