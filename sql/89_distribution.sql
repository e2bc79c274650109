-- ============================================================================================
-- invoices — scaling out with Citus: the distribution plan
-- ============================================================================================
-- Citus is never required: the plan is plain data, checked without Citus by
-- tests/citus/catalog.sh, and invoices.distribute_on_citus() only acts when the citus extension
-- is installed.
--
-- Every table of invoices_internal has exactly one row here:
--   tenant     distributed by merchant_id (merchants: by id), colocated with merchants, so every
--              statement of one merchant is routed to one shard group and every foreign key
--              between tenant tables is enforced inside that group;
--   reference  small global tables, copied to every node (currencies, chains, rate sources …);
--   routing    global lookups distributed by their own key (a slug, a key hash, a wallet key's
--              first address) that map it to the merchant: the public doors find a merchant's
--              row without its merchant_id, and a wallet key belongs to one merchant;
--   local      stays on the coordinator only (the worker's bookkeeping); never distributed.
-- position is the call order: reference tables first, then the colocation anchor (merchants),
-- then the tables colocated with it (a referenced table before the tables referencing it),
-- then the routing tables.
--
-- Needs: 15_tenancy (authorize)
-- Provides (API): distribute_on_citus()
-- Provides (internal): distribution_plan, claim_sequence_range()

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

comment on view invoices_internal.distribution_plan is
  'How each table of invoices_internal is laid out on Citus: kind tenant (distributed by distribution_column, colocated with colocate_with, or the anchor when null), reference (copied to every node), routing (a global lookup distributed by its own key, in a colocation group of its own) or local (coordinator only); position is the order of the create_reference_table / create_distributed_table calls. Checked without Citus by tests/citus/catalog.sh; applied by invoices.distribute_on_citus().';

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

-- Applies the plan on a Citus coordinator. Not SECURITY DEFINER: create_distributed_table
-- requires the tables' owner (the superuser who created the extension).
create function invoices.distribute_on_citus() returns setof text
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

comment on function invoices.distribute_on_citus() is
  'Superuser, on a Citus coordinator: distribute the extension''s tables as invoices_internal.distribution_plan says (reference tables, then merchants and the tables colocated with it by merchant_id, then the routing tables), skipping those already distributed and the local ones; grant the API roles the tables behind row-level security; give each worker node''s sequences a range of their own. Run it again after adding a node. Returns the calls it made. Needs citus.enable_unsafe_triggers = on on every node. Without Citus it raises 55000 with a hint.';
