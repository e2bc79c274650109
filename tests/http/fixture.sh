#!/usr/bin/env bash
# Creates a fresh pair of merchants for one end-to-end suite and prints them as JSON:
#   {"url", "public_url", "a": {"id", "key"}, "b": {"id", "key", "invoice": {"id", "slug", "invoice_number"}}}
# Each key has every scope and a high rate limit, so a suite can make its own narrower keys over
# HTTP (POST /rpc/create_api_key) without sharing counters with another suite. Merchant B has
# one finalized invoice: the other tenant's data that merchant A must never reach.
# Usage: tests/http/fixture.sh <suite-name>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
suite="${1:?suite name}"
psql_ -tA -v suite="$suite" -v url="$PGRST_URL" <<'SQL'
select current_setting('invoices.public_base_url') as public_url \gset
select (invoices.create_merchant(:'suite' || ' merchant A', 'a@example.com')->>'id') as a_id \gset
select (invoices.create_merchant(:'suite' || ' merchant B', 'b@example.com')->>'id') as b_id \gset
select invoices_internal.insert_api_key(:'a_id', 'suite admin', '{read,write,webhooks,admin}', 100000)->>'api_key' as a_key \gset
select invoices_internal.insert_api_key(:'b_id', 'suite admin', '{read,write,webhooks,admin}', 100000)->>'api_key' as b_key \gset
select invoices.act_as(:'b_id') \gset
select invoices.create_invoice(lines => '[{"description": "Secret work of B", "quantity": 1, "unit_price": "999.00"}]',
                               customer_email => 'client-of-b@example.com', metadata => '{"internal": "B only"}',
                               callback_url => 'http://127.0.0.1:9/b-hook', callback_secret => 'b-callback-secret',
                               send => true) as b_invoice \gset
select invoices.act_as(null) \gset
select jsonb_build_object(
  'url', :'url', 'public_url', :'public_url',
  'a', jsonb_build_object('id', :'a_id', 'key', :'a_key'),
  'b', jsonb_build_object('id', :'b_id', 'key', :'b_key',
         'invoice', (:'b_invoice')::jsonb - array(select k from jsonb_object_keys((:'b_invoice')::jsonb) k
                                                  where k not in ('id', 'slug', 'invoice_number'))));
SQL
