-- ============================================================================================
-- invoices — core tables (schema invoices_internal): currencies, merchants, invoices, lines, quotes, audit log
-- ============================================================================================
-- Every tenant table carries merchant_id as the first column of its primary key and of every
-- foreign key, so the schema can be distributed by merchant_id (Citus) later.
--
-- Needs: nothing of the files before
-- Provides (internal): currencies, merchants, invoices, invoice_slugs, invoice_lines, quotes, audit_log, current_actor(), refuse_change(), audit_log_append_only, audit_log_no_truncate, check_invoice_row(), invoice_lines_consistent(), quotes_immutable, invoice_lines_immutable, invoice_never_deleted(), invoice_never_deleted

-- Reference data: currencies and their exponents (ISO 4217 minor units; satoshi, wei …).
-- Seeded from the Rust list so SQL and Rust can never disagree.
create table invoices_internal.currencies (
  code     text primary key,
  exponent smallint not null check (exponent between 0 and 18),
  kind     text not null check (kind in ('fiat', 'crypto')),
  name     text not null
);

insert into invoices_internal.currencies (code, exponent, kind, name)
select code, exponent, kind, name from invoices_internal.currency_list();

-- The merchant whose API keys, invoices and wallets a request acts for.
create table invoices_internal.merchants (
  id                  uuid primary key default invoices_internal.uuid_v7(),
  name                text not null check (length(name) between 1 and 200),
  email               text,
  address             text,
  default_currency    text not null default 'USD' references invoices_internal.currencies (code),
  invoice_prefix      text not null default 'INV' check (invoice_prefix ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$'),
  -- Gapless numbering: taken with a row lock inside the creating transaction, so a rollback
  -- gives the number back.
  next_invoice_number bigint not null default 1 check (next_invoice_number >= 1),
  -- an invoice counts as paid when at most this percentage of its asset amount is missing
  payment_tolerance_percent numeric not null default 0
                      check (payment_tolerance_percent >= 0 and payment_tolerance_percent < 100),
  created_at          timestamptz not null default now(),
  -- how to pay by bank transfer: printed on invoices that take a wire (BTPay's payment_methods)
  bank_instructions   text check (length(bank_instructions) between 1 and 2000),
  -- a payer may ask for a new quote of an expired, unpaid invoice (the checkout's button)
  public_requote      boolean not null default false,
  -- reminders (dunning): days relative to an invoice's due date (negative: before it), each
  -- sent at reminder_time in time_zone; an empty list turns them off (87_email.sql)
  reminder_days       integer[] not null default '{-3,0,7}',
  reminder_time       time not null default '09:00',
  time_zone           text not null default 'UTC'
);

create table invoices_internal.invoices (
  merchant_id        uuid not null references invoices_internal.merchants (id),
  id                 uuid not null default invoices_internal.uuid_v7(),
  number_seq         bigint not null,
  invoice_number     text not null,
  slug               text not null default invoices_internal.new_slug(),
  status             text not null default 'draft',
  currency           text not null,
  exponent           smallint not null,     -- the currency's exponent, fixed at creation
  subtotal           numeric not null,
  discount_amount    numeric not null default 0,
  tax_rate           numeric not null default 0,
  tax_amount         numeric not null default 0,
  total              numeric not null,
  amount_paid        numeric not null default 0,  -- in the invoice currency
  asset_paid         numeric not null default 0,  -- in the quoted asset: the sum of its payments
  customer_email     text,
  customer_name      text,
  customer_company   text,
  customer_address   text,
  merchant_snapshot  jsonb not null,        -- merchant name/email/address as printed on the invoice
  issue_date         date not null default current_date,
  due_date           date,
  notes              text,
  metadata           jsonb not null default '{}'::jsonb,
  order_id           text,
  -- payment settings (quotes, addresses and callbacks use them)
  asset              text,
  markup_percent     numeric,
  confirmations      integer,
  expiry_minutes     integer not null default 30,
  pause_minutes      integer,
  callback_url       text,
  callback_secret    text,
  attempts_callback  integer,
  success_url        text,
  failed_url         text,
  expires_at         timestamptz,           -- the deadline of the latest quote (payment window)
  address_id         bigint,                -- the deposit address (invoices_internal.addresses)
  deposit_address    text,
  overpaid           boolean not null default false,
  paid_late          boolean not null default false,
  -- lifecycle timestamps, stamped by the status trigger
  created_at         timestamptz not null default now(),
  updated_at         timestamptz not null default now(),
  finalized_at       timestamptz,
  partially_paid_at  timestamptz,
  paid_at            timestamptz,
  confirmed_at       timestamptz,
  expired_at         timestamptz,
  overdue_at         timestamptz,
  cancelled_at       timestamptz,
  sent_at            timestamptz,
  viewed_at          timestamptz,           -- first opening of the hosted page (invoice.viewed)
  -- what the invoice object shows from other tables, kept on the row so that reading an
  -- invoice reads one row (on Citus: one shard, routed): its lines as create_invoice wrote
  -- them (lines never change), and its latest quote's amount and rate (lock_quote keeps them)
  lines              jsonb not null default '[]'::jsonb,
  asset_amount       numeric,
  rate               numeric,
  voided_at          timestamptz,           -- void_invoice: issued by mistake, nothing received
  marked_uncollectible_at timestamptz,      -- mark_uncollectible: written off as bad debt
  written_off        numeric,               -- the amount written off then (total - amount_paid)
  primary key (merchant_id, id),
  unique (merchant_id, invoice_number)
  -- The row rules (consistent totals, ranges, known currency and status) are checked by
  -- check_invoice_row() in the insert and update triggers below rather than by CHECK
  -- constraints: PostgreSQL re-reads CHECK expressions for every INSERT statement, while the
  -- trigger's expressions are compiled once per session (create_invoice is the hot path).
);

create index invoices_merchant_status_idx on invoices_internal.invoices (merchant_id, status, created_at desc);

-- Slugs are random (~79 bits): unique per merchant by this index (it includes merchant_id, so
-- the table can be distributed by it on Citus) and, by their randomness, across merchants. The
-- public page finds an invoice by its slug alone through the same index (slug leads).
create unique index invoices_slug_key on invoices_internal.invoices (slug, merchant_id);

create index invoices_id_idx on invoices_internal.invoices (id);

-- The payer's doors (hosted page, PDF, status poll) find an invoice by its slug alone: the
-- slug's owner lives in a table keyed by the slug, like payment_link_slugs (on Citus
-- distributed by slug: one shard per lookup, then one for the invoice). create_invoice writes
-- both rows in its transaction.
create table invoices_internal.invoice_slugs (
  slug        text primary key,
  merchant_id uuid not null,
  invoice_id  uuid not null
);

-- the worker's sweeps: unpaid invoices past their quote deadline, open invoices past due
-- (invoices without a deadline or due date stay out of them: one index entry fewer to write)
create index invoices_expiring_idx on invoices_internal.invoices (expires_at)
  where status in ('pending', 'overdue') and expires_at is not null;

create index invoices_due_idx on invoices_internal.invoices (due_date)
  where status in ('pending', 'partial') and due_date is not null;

create table invoices_internal.invoice_lines (
  merchant_id  uuid not null,
  invoice_id   uuid not null,
  position     smallint not null,
  description  text not null,
  quantity     numeric not null,
  unit_price   numeric not null,
  amount       numeric not null,
  -- one CHECK for the whole row: PostgreSQL re-reads and compiles every CHECK expression for
  -- each INSERT statement, so five column checks cost five times the one (the hot path)
  constraint invoice_lines_valid check (position between 1 and 100 and length(description) between 1 and 500
                                        and quantity > 0 and unit_price >= 0 and amount >= 0),
  primary key (merchant_id, invoice_id, position),
  foreign key (merchant_id, invoice_id) references invoices_internal.invoices (merchant_id, id)
    on delete cascade
);

-- Quotes: the crypto price of an invoice, locked when it is finalized (and again by
-- requote_invoice after an expiry). Never changed: a new quote is a new row.
create table invoices_internal.quotes (
  merchant_id    uuid not null,
  invoice_id     uuid not null,
  id             uuid not null default invoices_internal.uuid_v7(),
  asset          text not null check (asset in ('BTC', 'ETH', 'USDC', 'KAS')),
  currency       text not null,
  amount         numeric not null check (amount >= 0),   -- the invoice total, in currency
  rate           numeric check (rate > 0),                -- currency per 1 asset; null if currency = asset
  rate_sources   text[] not null default '{}',
  markup_percent numeric not null default 0 check (markup_percent > -100 and markup_percent <= 100),
  asset_amount   numeric not null check (asset_amount >= 0),
  created_at     timestamptz not null default now(),
  expires_at     timestamptz not null,
  primary key (merchant_id, invoice_id, id),
  foreign key (merchant_id, invoice_id) references invoices_internal.invoices (merchant_id, id),
  check (expires_at > created_at),
  check ((rate is null) = (currency = asset))
);

-- Append-only history of every status change (and the creation) of every invoice.
create table invoices_internal.audit_log (
  merchant_id  uuid not null,
  id           bigint generated always as identity,
  invoice_id   uuid not null,
  from_status  text,                       -- null for the creation
  to_status    text not null,
  event        text not null,
  actor        text not null,
  at           timestamptz not null default clock_timestamp(),
  -- one index serves both the key and "the history of this invoice"; no foreign key: rows
  -- are written only by the invoices triggers, and invoices are never deleted
  primary key (merchant_id, invoice_id, id)
);

-- Who did it: the API key of an HTTP request, the background worker (invoices.actor), else the
-- database user.
create function invoices_internal.current_actor() returns text
language sql stable
begin atomic
  select coalesce('api_key:' || nullif(current_setting('invoices.api_key_id', true), ''),
                  nullif(current_setting('invoices.actor', true), ''),
                  session_user::text);
end;

-- One trigger function for rows that must never change: raises TG_ARGV[0] (formatted with the
-- operation) and hint TG_ARGV[1].
create function invoices_internal.refuse_change() returns trigger
language plpgsql
as $$
begin
  raise exception '%', format(tg_argv[0], tg_op)
    using errcode = '42501', hint = tg_argv[1];
end
$$;

create trigger audit_log_append_only
  before update or delete on invoices_internal.audit_log
  for each row execute function invoices_internal.refuse_change(
    'the audit log is append-only: %s is not allowed',
    'audit rows are written by the status trigger and are never changed or removed');

create trigger audit_log_no_truncate
  before truncate on invoices_internal.audit_log
  for each statement execute function invoices_internal.refuse_change(
    'the audit log is append-only: %s is not allowed',
    'audit rows are written by the status trigger and are never changed or removed');

-- The rules every invoice row obeys, whichever door wrote it (docs/money.md). Raises 23514
-- naming the rule. PostgreSQL's round() is half away from zero, like the Rust that computed
-- the amounts.
create function invoices_internal.check_invoice_row(i invoices_internal.invoices) returns void
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

-- Lines agree with the invoice's totals: checked at commit, after all lines of a new invoice
-- are in (a CHECK cannot look at other rows). SECURITY DEFINER: it fires at COMMIT, outside
-- the SECURITY DEFINER function that wrote the rows, as the caller (e.g. PostgREST's role).
create function invoices_internal.invoice_lines_consistent() returns trigger
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

create constraint trigger invoice_lines_match_subtotal
  after insert on invoices_internal.invoices
  deferrable initially deferred
  for each row execute function invoices_internal.invoice_lines_consistent();

create trigger quotes_immutable
  before update or delete on invoices_internal.quotes
  for each row execute function invoices_internal.refuse_change(
    'quotes cannot be changed once locked (%s refused)',
    'an expired invoice gets a new quote with invoices.requote_invoice');

create trigger invoice_lines_immutable
  before update or delete on invoices_internal.invoice_lines
  for each row execute function invoices_internal.refuse_change(
    'invoice lines cannot be changed once written (%s refused)',
    'cancel the invoice and create a new one');

-- Invoices are never deleted (their numbers are gapless and their history is audited):
-- cancel them instead.
create function invoices_internal.invoice_never_deleted() returns trigger
language plpgsql
as $$
begin
  raise exception 'invoice % cannot be deleted', old.invoice_number
    using errcode = '42501', hint = 'cancel it with invoices.cancel_invoice';
end
$$;

create trigger invoice_never_deleted
  before delete on invoices_internal.invoices
  for each row execute function invoices_internal.invoice_never_deleted();
