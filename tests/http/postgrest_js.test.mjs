// End-to-end tests of the HTTP door through the real client library @supabase/postgrest-js,
// against the running PostgREST (schema invoices).
//
//   node --test tests/http/postgrest_js.test.mjs
//
// The fixture (two merchants, their admin keys, one finalized invoice of merchant B) is read
// from the JSON file named by $FIXTURE; without it the test runs tests/http/fixture.sh itself.
// postgrest-js does not hand response headers back, so every client is built with a fetch that
// records the last response's headers (X-RateLimit-*, Idempotent-Replayed).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const LIB = path.join(ROOT, '.local/npm/node_modules/@supabase/postgrest-js');
const { PostgrestClient } = await import(pathToFileURL(path.join(LIB, 'dist/index.mjs')).href);
const LIB_VERSION = JSON.parse(readFileSync(path.join(LIB, 'package.json'), 'utf8')).version;

const fixture = process.env.FIXTURE
  ? JSON.parse(readFileSync(process.env.FIXTURE, 'utf8'))
  : JSON.parse(execFileSync('bash', [path.join(HERE, 'fixture.sh'), 'postgrest-js'],
                            { cwd: ROOT, encoding: 'utf8' }));
const URL_ = fixture.url;
const PUBLIC_URL = fixture.public_url;  // invoices.public_base_url: the web front of the hosted pages
const A = fixture.a;
const B = fixture.b;
// Tags this run's invoices so listing assertions do not depend on what else merchant A has.
const RUN = `pgjs-${Date.now().toString(36)}-${process.pid}`;

// The fields of an invoice that only its merchant may see.
const PRIVATE_FIELDS = ['merchant_id', 'merchant', 'customer_email', 'customer_name', 'customer_company',
  'customer_address', 'metadata', 'order_id', 'callback_url', 'callback_secret', 'success_url',
  'failed_url', 'attempts_callback'];

/**
 * A postgrest-js client for schema invoices. auth: {key, style: 'x-api-key' | 'bearer'} or null
 * (no key). The returned object is {db, last}: last.headers / last.status are those of the most
 * recent response this client got.
 */
function client(auth, extraHeaders = {}) {
  const headers = { ...extraHeaders };
  if (auth && auth.style === 'bearer') headers.Authorization = `Bearer ${auth.key}`;
  else if (auth) headers['X-API-Key'] = auth.key;
  const last = { headers: null, status: null };
  const recordingFetch = async (input, init) => {
    const res = await fetch(input, init);
    last.headers = res.headers;
    last.status = res.status;
    return res;
  };
  const db = new PostgrestClient(URL_, { schema: 'invoices', headers, fetch: recordingFetch, retry: false });
  return { db, last };
}

const keyed = (key, style = 'x-api-key') => client({ key, style });
const a = keyed(A.key);
const bClient = keyed(B.key);
const anon = client(null);

/** data of a successful response; fails the test with the server's error otherwise. */
function ok(res, what) {
  assert.equal(res.error, null, `${what}: unexpected error ${JSON.stringify(res.error)} (HTTP ${res.status})`);
  return res.data;
}

/** Asserts an error response: HTTP status and SQLSTATE code; returns the error object. */
function fails(res, status, code, what) {
  assert.notEqual(res.error, null, `${what}: expected HTTP ${status} ${code}, got success ${JSON.stringify(res.data)}`);
  assert.equal(res.status, status, `${what}: status (error ${JSON.stringify(res.error)})`);
  assert.equal(res.error.code, code, `${what}: code (error ${JSON.stringify(res.error)})`);
  return res.error;
}

/** The field names listed in a validation error's details ({"errors":[{field, message}]}). */
function errorFields(error) {
  return JSON.parse(error.details).errors.map((e) => e.field);
}

/** Exact number of merchant A's invoices (optionally only those whose order_id starts with tag). */
async function countInvoices(c, tag) {
  let q = c.db.from('invoices').select('id', { count: 'exact', head: true });
  if (tag) q = q.like('order_id', `${tag}%`);
  const res = await q;
  ok(res, 'count invoices');
  return res.count;
}

const oneLine = (description = 'Line', unit_price = 10) => [{ description, unit_price }];

async function createInvoice(c, args, what = 'create_invoice') {
  return ok(await c.db.rpc('create_invoice', args), what);
}

async function newKey(scopes, rate_limit_per_minute = null) {
  const k = ok(await a.db.rpc('create_api_key', { name: `${RUN} ${scopes.join('+')}`, scopes, rate_limit_per_minute }),
               `create_api_key ${scopes}`);
  assert.deepEqual(k.scopes, scopes);
  assert.match(k.api_key, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'an API key is a JWT');
  return k;
}

// The server may be in the middle of a rebuild: wait (at most ~40 s) until it answers.
before(async () => {
  for (let i = 0; ; i++) {
    try {
      const res = await fetch(`${URL_}/`);
      await res.arrayBuffer();
      return;
    } catch (e) {
      if (i >= 20) throw e;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
});

test(`postgrest-js ${LIB_VERSION} loads on node ${process.version} and reaches PostgREST`, async () => {
  assert.equal(typeof PostgrestClient, 'function');
  const res = await anon.db.from('public_invoices').select('id').eq('id', B.invoice.id);
  assert.equal(res.status, 200);
  assert.match(anon.last.headers.get('server') ?? '', /^postgrest\//);
});

test('X-API-Key and Authorization: Bearer both authenticate the same key', async () => {
  const bearer = keyed(A.key, 'bearer');
  const viaHeader = ok(await a.db.from('invoices').select('id,merchant_id').limit(1), 'X-API-Key');
  const viaBearer = ok(await bearer.db.from('invoices').select('id,merchant_id').limit(1), 'Bearer');
  assert.ok(Array.isArray(viaHeader) && Array.isArray(viaBearer));
  // both are merchant A: whatever rows they see are A's
  for (const row of [...viaHeader, ...viaBearer]) assert.equal(row.merchant_id, A.id);

  const created = await createInvoice(bearer, { lines: oneLine('Bearer line', 12), order_id: `${RUN}-bearer` });
  assert.equal(created.merchant_id, A.id);
  assert.equal(created.total, '12.00');
  const seen = ok(await a.db.from('invoices').select('id,total').eq('id', created.id), 'read back with X-API-Key');
  assert.deepEqual(seen, [{ id: created.id, total: 12 }]);
});

test('a request without a key, with an unknown key or a forged token gets 401 code 28000', async () => {
  const noKey = await anon.db.from('invoices').select('id');
  let e = fails(noKey, 401, '28000', 'no key');
  assert.equal(e.message, 'an API key is required');

  const unknown = await keyed('inv_not_a_real_key').db.from('invoices').select('id');
  e = fails(unknown, 401, '28000', 'unknown X-API-Key');
  assert.equal(e.message, 'invalid API key');

  // A JWT with a valid shape but a wrong signature: PostgREST itself refuses the bearer token.
  const [h, p] = A.key.split('.');
  const forged = await keyed(`${h}.${p}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`, 'bearer').db.from('invoices').select('id');
  assert.equal(forged.status, 401);
  assert.notEqual(forged.error, null);

  const noKeyRpc = await anon.db.rpc('create_invoice', { lines: oneLine() });
  fails(noKeyRpc, 401, '28000', 'create_invoice without key');
});

test('create_invoice with the Living Invoices payload (to_email, items) makes a draft of 500.00', async () => {
  const inv = await createInvoice(a, {
    to_email: 'customer@example.com',
    items: [{ description: 'Web Design', unit_price: 500 }],
  });
  assert.equal(inv.status, 'draft');
  assert.equal(inv.merchant_id, A.id);
  assert.equal(inv.currency, 'USD');
  assert.equal(inv.customer_email, 'customer@example.com');
  assert.equal(inv.subtotal, '500.00');
  assert.equal(inv.tax_amount, '0.00');
  assert.equal(inv.discount_amount, '0.00');
  assert.equal(inv.total, '500.00');
  assert.equal(inv.amount_paid, '0.00');
  assert.equal(inv.amount_due, '500.00');
  assert.equal(inv.lines.length, 1);
  assert.equal(inv.lines[0].description, 'Web Design');
  assert.equal(inv.lines[0].quantity, '1');
  assert.equal(inv.lines[0].amount, '500.00');
  assert.match(inv.invoice_number, /^INV-\d{4,}$/);
  assert.equal(inv.hosted_url, `${PUBLIC_URL}/i/${inv.slug}`);
  assert.equal(inv.pdf_url, `${PUBLIC_URL}/rpc/invoice_pdf?ref=${inv.slug}`);
  assert.ok(!('callback_secret' in inv), 'the callback secret is never returned');
});

test('create_invoice with the BTPay example (1 x 150.00 + 2 x 25.00, tax 10%) totals 220.00', async () => {
  const inv = await createInvoice(a, {
    lines: [
      { description: 'Consulting', quantity: 1, unit_price: '150.00' },
      { description: 'Hosting', quantity: 2, unit_price: '25.00' },
    ],
    tax_rate: 10,
    customer_name: 'Jane Doe',
    customer_company: 'Doe Ltd',
  });
  assert.equal(inv.status, 'draft');
  assert.equal(inv.subtotal, '200.00');
  assert.equal(inv.tax_rate, '10');
  assert.equal(inv.tax_amount, '20.00');
  assert.equal(inv.total, '220.00');
  assert.equal(inv.amount_due, '220.00');
  assert.deepEqual(inv.lines.map((l) => [l.description, l.quantity, l.unit_price, l.amount]),
                   [['Consulting', '1', '150.00', '150.00'], ['Hosting', '2', '25.00', '50.00']]);
  assert.equal(inv.customer_name, 'Jane Doe');
  assert.equal(inv.customer_company, 'Doe Ltd');
});

test('JPY amounts have no decimals and send: true finalizes at once', async () => {
  const inv = await createInvoice(a, { lines: oneLine('Ramen', 1234), currency: 'JPY', send: true });
  assert.equal(inv.currency, 'JPY');
  assert.equal(inv.total, '1234');
  assert.equal(inv.subtotal, '1234');
  assert.equal(inv.status, 'pending');
  assert.notEqual(inv.finalized_at, null);
});

test('invoices can be filtered by status, counted exactly and paged with range/limit', async () => {
  const tag = `${RUN}-list-`;
  const made = [];
  for (const [i, send] of [[1, true], [2, false], [3, true]]) {
    made.push(await createInvoice(a, { lines: oneLine(`List ${i}`, 100 * i), order_id: `${tag}${i}`, send }));
  }
  assert.deepEqual(made.map((m) => m.status), ['pending', 'draft', 'pending']);

  const all = await a.db.from('invoices').select('order_id,status,total', { count: 'exact' })
    .like('order_id', `${tag}%`).order('order_id');
  assert.equal(all.count, 3);
  assert.deepEqual(ok(all, 'all'), [
    { order_id: `${tag}1`, status: 'pending', total: 100 },
    { order_id: `${tag}2`, status: 'draft', total: 200 },
    { order_id: `${tag}3`, status: 'pending', total: 300 },
  ]);
  assert.equal(a.last.headers.get('content-range'), '0-2/3');

  const pending = await a.db.from('invoices').select('id,order_id,status', { count: 'exact' })
    .eq('status', 'pending').like('order_id', `${tag}%`).order('order_id', { ascending: true });
  assert.equal(pending.count, 2);
  assert.deepEqual(ok(pending, 'pending'), [
    { id: made[0].id, order_id: `${tag}1`, status: 'pending' },
    { id: made[2].id, order_id: `${tag}3`, status: 'pending' },
  ]);

  const page2 = await a.db.from('invoices').select('id,order_id', { count: 'exact' })
    .eq('status', 'pending').like('order_id', `${tag}%`).order('order_id').range(1, 1);
  assert.equal(page2.count, 2, 'the count is of all matching rows, not of the page');
  assert.deepEqual(ok(page2, 'range(1,1)'), [{ id: made[2].id, order_id: `${tag}3` }]);
  assert.equal(a.last.headers.get('content-range'), '1-1/2');

  const first = await a.db.from('invoices').select('order_id')
    .like('order_id', `${tag}%`).order('order_id', { ascending: false }).limit(1);
  assert.deepEqual(ok(first, 'limit(1)'), [{ order_id: `${tag}3` }]);

  const drafts = ok(await a.db.from('invoices').select('id').eq('status', 'draft').like('order_id', `${tag}%`), 'drafts');
  assert.deepEqual(drafts, [{ id: made[1].id }]);

  // embedded lines and the invoice_lines view agree
  const lines = ok(await a.db.from('invoice_lines').select('invoice_id,description,amount').eq('invoice_id', made[2].id),
                   'invoice_lines');
  assert.deepEqual(lines, [{ invoice_id: made[2].id, description: 'List 3', amount: 300 }]);
});

test('invalid create_invoice requests get 400 code 22023 naming the bad field, and create nothing', async () => {
  const line = { description: 'Valid line', unit_price: 10 };
  const cases = [
    ['missing lines', {}, 'lines'],
    ['101 lines', { lines: Array.from({ length: 101 }, () => line) }, 'lines'],
    ['negative quantity', { lines: [{ description: 'x', quantity: -1, unit_price: 10 }] }, 'lines[0].quantity'],
    ['non-numeric unit_price', { lines: [{ description: 'x', unit_price: 'abc' }] }, 'lines[0].unit_price'],
    ['unknown currency XXX', { lines: [line], currency: 'XXX' }, 'currency'],
    ['discount above subtotal', { lines: [line], discount_amount: 11 }, 'discount_amount'],
    ['bad email', { lines: [line], customer_email: 'not-an-email' }, 'customer_email'],
    ['due_date before issue_date', { lines: [line], issue_date: '2026-01-10', due_date: '2026-01-09' }, 'due_date'],
    ['lines and items together', { lines: [line], items: [line] }, 'items'],
  ];
  const before = await countInvoices(a);
  for (const [what, args, field] of cases) {
    const res = await a.db.rpc('create_invoice', args);
    const e = fails(res, 400, '22023', what);
    assert.ok(errorFields(e).includes(field), `${what}: details names ${field}: ${e.details}`);
    assert.equal(res.data, null);
  }
  assert.equal(await countInvoices(a), before, 'no invoice was created by a rejected request');
});

test('a read-only key cannot create invoices and a write-only key cannot read them (403 code 42501)', async () => {
  const ro = keyed((await newKey(['read'])).api_key);
  const wo = keyed((await newKey(['write'])).api_key);

  ok(await ro.db.from('invoices').select('id').limit(1), 'read key reads');
  let e = fails(await ro.db.rpc('create_invoice', { lines: oneLine() }), 403, '42501', 'read key creates');
  assert.equal(e.message, 'this API key lacks the write scope');
  fails(await ro.db.rpc('create_api_key', { name: 'x', scopes: ['admin'] }), 403, '42501', 'read key creates a key');
  fails(await ro.db.from('api_keys').select('id'), 403, '42501', 'read key lists keys');

  const made = await createInvoice(wo, { lines: oneLine('Write-only', 5), order_id: `${RUN}-wo` });
  assert.equal(made.total, '5.00');
  e = fails(await wo.db.from('invoices').select('id'), 403, '42501', 'write key reads');
  assert.equal(e.message, 'this API key lacks the read scope');
  fails(await wo.db.rpc('invoice_status', { ref: made.id }), 403, '42501', 'write key invoice_status');

  // the read key can ask for the status of what the write key made
  const st = ok(await ro.db.rpc('invoice_status', { ref: made.invoice_number }), 'invoice_status');
  assert.equal(st.id, made.id);
  assert.equal(st.status, 'draft');
  assert.equal(st.total, '5.00');
});

test('GET /api_keys lists keys with their prefix but never the key itself', async () => {
  const k = await newKey(['read']);
  const rows = ok(await a.db.from('api_keys').select('*').eq('id', k.id), 'api_keys');
  assert.equal(rows.length, 1);
  assert.equal(rows[0].prefix, k.prefix);
  assert.deepEqual(rows[0].scopes, ['read']);
  assert.equal(rows[0].active, true);
  assert.ok(!('api_key' in rows[0]) && !('key_hash' in rows[0]));
  assert.ok(!JSON.stringify(rows).includes(k.api_key), 'the key is not in the listing');
});

test('a revoked key works until it is revoked, then gets 401 code 28000 with either header', async () => {
  const k = await newKey(['read', 'write']);
  const viaHeader = keyed(k.api_key);
  const viaBearer = keyed(k.api_key, 'bearer');
  ok(await viaHeader.db.from('invoices').select('id').limit(1), 'before revoking (X-API-Key)');
  ok(await viaBearer.db.from('invoices').select('id').limit(1), 'before revoking (Bearer)');

  const revoked = ok(await a.db.rpc('revoke_api_key', { id: k.id }), 'revoke_api_key');
  assert.equal(revoked.id, k.id);
  assert.notEqual(revoked.revoked_at, null);

  let e = fails(await viaHeader.db.from('invoices').select('id'), 401, '28000', 'revoked key (X-API-Key)');
  assert.equal(e.message, 'this API key was revoked');
  e = fails(await viaBearer.db.rpc('create_invoice', { lines: oneLine() }), 401, '28000', 'revoked key (Bearer)');
  assert.equal(e.message, 'this API key was revoked');

  const listed = ok(await a.db.from('api_keys').select('active,revoked_at').eq('id', k.id), 'listing');
  assert.deepEqual(listed, [{ active: false, revoked_at: revoked.revoked_at }]);
});

test("merchant A cannot see, change or even find merchant B's invoice", async () => {
  const bInv = B.invoice;
  assert.deepEqual(ok(await a.db.from('invoices').select('*').eq('id', bInv.id), 'by id'), []);
  assert.deepEqual(ok(await a.db.from('invoices').select('*').eq('slug', bInv.slug), 'by slug'), []);
  assert.deepEqual(ok(await a.db.from('invoices').select('id').eq('merchant_id', B.id), 'by merchant'), []);
  assert.deepEqual(ok(await a.db.from('invoice_lines').select('*').eq('invoice_id', bInv.id), 'lines'), []);
  assert.deepEqual(ok(await a.db.from('audit_log').select('*').eq('invoice_id', bInv.id), 'audit'), []);
  const everything = ok(await a.db.from('invoices').select('merchant_id,customer_email,metadata'), 'all of A');
  assert.ok(everything.every((r) => r.merchant_id === A.id));
  assert.ok(!JSON.stringify(everything).includes('B only'));
  assert.ok(!JSON.stringify(everything).includes('client-of-b@example.com'));

  for (const ref of [bInv.id, bInv.slug]) {
    for (const fn of ['invoice_status', 'cancel_invoice', 'finalize_invoice']) {
      const e = fails(await a.db.rpc(fn, { ref }), 404, 'P0002', `${fn}(${ref})`);
      assert.equal(e.message, `invoice "${ref}" not found`);
    }
  }
  // B's invoice number may well be one of A's own numbers too: then A gets its own invoice.
  const byNumber = await a.db.rpc('invoice_status', { ref: bInv.invoice_number });
  if (byNumber.error) fails(byNumber, 404, 'P0002', 'invoice_status(number)');
  else assert.notEqual(byNumber.data.id, bInv.id);

  const patch = await a.db.from('invoices').update({ notes: 'changed by A', status: 'cancelled' }).eq('id', bInv.id);
  assert.notEqual(patch.error, null, 'PATCH /invoices is refused');
  assert.ok(patch.status >= 400 && patch.status < 500, `PATCH status ${patch.status}`);
  const del = await a.db.from('invoices').delete().eq('id', bInv.id);
  assert.notEqual(del.error, null, 'DELETE /invoices is refused');
  assert.ok(del.status >= 400 && del.status < 500, `DELETE status ${del.status}`);

  // B still sees its invoice exactly as the fixture made it
  const mine = ok(await bClient.db.from('invoices')
    .select('id,merchant_id,status,notes,customer_email,metadata,callback_url,total,cancelled_at').eq('id', bInv.id), 'B reads');
  assert.deepEqual(mine, [{
    id: bInv.id, merchant_id: B.id, status: 'pending', notes: null,
    customer_email: 'client-of-b@example.com', metadata: { internal: 'B only' },
    callback_url: 'http://127.0.0.1:9/b-hook', total: 999, cancelled_at: null,
  }]);
  const st = ok(await bClient.db.rpc('invoice_status', { ref: bInv.invoice_number }), 'B invoice_status');
  assert.equal(st.id, bInv.id);
  assert.equal(st.status, 'pending');
});

test('the same Idempotency-Key and body replays the first response; another body gets 409 code 23505', async () => {
  const tag = `${RUN}-idem`;
  const key = `${RUN}-create`;
  const args = { lines: oneLine('Idempotent', 42), order_id: tag, customer_email: 'idem@example.com' };

  const first = await a.db.rpc('create_invoice', args).setHeader('Idempotency-Key', key);
  const inv = ok(first, 'first');
  assert.equal(a.last.headers.get('idempotent-replayed'), null, 'the first response is not a replay');
  assert.equal(await countInvoices(a, tag), 1);

  const again = await a.db.rpc('create_invoice', args).setHeader('Idempotency-Key', key);
  assert.equal(again.status, 200);
  assert.equal(a.last.headers.get('idempotent-replayed'), 'true');
  assert.deepEqual(ok(again, 'replay'), inv, 'the replay is the first response');
  assert.equal(await countInvoices(a, tag), 1, 'the replay created nothing');

  const other = await a.db.rpc('create_invoice', { ...args, lines: oneLine('Idempotent', 43) })
    .setHeader('Idempotency-Key', key);
  const e = fails(other, 409, '23505', 'same key, other body');
  assert.deepEqual(errorFields(e), ['Idempotency-Key']);
  assert.equal(await countInvoices(a, tag), 1, 'the conflict created nothing');

  // without the header every request creates an invoice
  ok(await a.db.rpc('create_invoice', args), 'no key 1');
  assert.equal(await countInvoices(a, tag), 2);

  // finalize: the replay answers 200 where a plain second finalize is an illegal transition
  const fkey = `${RUN}-finalize`;
  const fin = ok(await a.db.rpc('finalize_invoice', { ref: inv.id }).setHeader('Idempotency-Key', fkey), 'finalize');
  assert.equal(fin.status, 'pending');
  const finAgain = ok(await a.db.rpc('finalize_invoice', { ref: inv.id }).setHeader('Idempotency-Key', fkey), 'finalize replay');
  assert.equal(a.last.headers.get('idempotent-replayed'), 'true');
  assert.deepEqual(finAgain, fin);
  const illegal = fails(await a.db.rpc('finalize_invoice', { ref: inv.id }), 409, '23514', 'finalize twice');
  assert.match(illegal.message, /is pending/);
});

test('public_invoices needs no key, shows a finalized invoice by slug or id without private fields, and no drafts', async () => {
  const bInv = B.invoice;
  for (const [col, val] of [['slug', bInv.slug], ['id', bInv.id]]) {
    const rows = ok(await anon.db.from('public_invoices').select('*').eq(col, val), `public by ${col}`);
    assert.equal(rows.length, 1, `one row by ${col}`);
    const row = rows[0];
    assert.equal(row.id, bInv.id);
    assert.equal(row.slug, bInv.slug);
    assert.equal(row.invoice_number, bInv.invoice_number);
    assert.equal(row.status, 'pending');
    assert.equal(row.total, 999);
    assert.match(row.merchant_name, / merchant B$/);
    assert.equal(row.hosted_url, `${PUBLIC_URL}/i/${bInv.slug}`);
    for (const f of PRIVATE_FIELDS) assert.ok(!(f in row), `public_invoices has no ${f}`);
    const text = JSON.stringify(row);
    for (const secret of ['b-callback-secret', 'client-of-b@example.com', 'B only', '127.0.0.1:9/b-hook', B.id]) {
      assert.ok(!text.includes(secret), `public row does not contain ${secret}`);
    }
    // no key: counted per client address, against invoices.anonymous_rate_limit_per_minute
    assert.equal(anon.last.headers.get('x-ratelimit-limit'), '100', 'no key: the anonymous limit per client address');
  }

  const draft = await createInvoice(a, { lines: oneLine('Still a draft', 1), order_id: `${RUN}-draft` });
  assert.equal(draft.status, 'draft');
  assert.deepEqual(ok(await anon.db.from('public_invoices').select('id').eq('id', draft.id), 'draft by id'), []);
  assert.deepEqual(ok(await anon.db.from('public_invoices').select('id').eq('slug', draft.slug), 'draft by slug'), []);
  // once finalized it appears
  ok(await a.db.rpc('finalize_invoice', { ref: draft.slug }), 'finalize');
  assert.deepEqual(ok(await anon.db.from('public_invoices').select('id,status').eq('slug', draft.slug), 'finalized'),
                   [{ id: draft.id, status: 'pending' }]);
});

test('every keyed response, success or error, carries X-RateLimit-Limit/Remaining/Reset', async () => {
  const k = await newKey(['read'], 50);
  const c = keyed(k.api_key);
  const t0 = Math.floor(Date.now() / 1000);

  ok(await c.db.from('invoices').select('id').limit(1), 'first request');
  assert.equal(c.last.headers.get('x-ratelimit-limit'), '50');
  assert.equal(c.last.headers.get('x-ratelimit-remaining'), '49');
  const reset = Number(c.last.headers.get('x-ratelimit-reset'));
  assert.ok(Number.isInteger(reset) && reset >= t0 && reset <= t0 + 61, `reset ${reset} is within a minute of ${t0}`);

  fails(await c.db.rpc('create_invoice', { lines: oneLine() }), 403, '42501', 'error response');
  assert.equal(c.last.headers.get('x-ratelimit-limit'), '50');
  const remaining = Number(c.last.headers.get('x-ratelimit-remaining'));
  // 48 unless the one-minute window rolled over between the two requests
  assert.ok(remaining === 48 || (remaining === 49 && Number(c.last.headers.get('x-ratelimit-reset')) > reset),
            `remaining ${remaining}`);

  ok(await a.db.from('invoices').select('id').limit(1), 'fixture key');
  assert.equal(a.last.headers.get('x-ratelimit-limit'), '100000');
  assert.ok(Number(a.last.headers.get('x-ratelimit-remaining')) < 100000);
});

test('a key over its per-minute limit gets 429 code 54000 with Retry-After', async () => {
  for (let attempt = 1; ; attempt++) {
    const c = keyed((await newKey(['read'], 2)).api_key);
    ok(await c.db.from('invoices').select('id').limit(1), 'request 1');
    const reset1 = c.last.headers.get('x-ratelimit-reset');
    ok(await c.db.from('invoices').select('id').limit(1), 'request 2');
    assert.equal(c.last.headers.get('x-ratelimit-remaining'), '0');
    const third = await c.db.from('invoices').select('id').limit(1);
    if (third.error === null && attempt < 3 && c.last.headers.get('x-ratelimit-reset') !== reset1) continue;
    const e = fails(third, 429, '54000', 'request 3');
    assert.equal(e.message, 'rate limit exceeded: 2 requests per minute for this API key');
    assert.equal(c.last.headers.get('x-ratelimit-limit'), '2');
    assert.equal(c.last.headers.get('x-ratelimit-remaining'), '0');
    const retryAfter = Number(c.last.headers.get('retry-after'));
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 0 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    return;
  }
});
