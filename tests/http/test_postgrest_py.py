"""End-to-end tests of the invoices HTTP API through the real postgrest-py client (PyPI `postgrest`).

Runs against the PostgREST that is already serving schema `invoices` (tests/http/fixture.sh
makes a fresh pair of merchants A and B for this suite). Merchant A is the caller throughout;
merchant B owns one finalized invoice that A must never reach.

    /work/main/.local/venv/bin/python -m unittest tests/http/test_postgrest_py.py -v

The fixture is read from the JSON file named by $FIXTURE, or made by running
`bash tests/http/fixture.sh postgrest-py` when $FIXTURE is unset.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import unittest
import uuid
from pathlib import Path

import httpx
from postgrest import APIError, SyncPostgrestClient
from postgrest.constants import DEFAULT_POSTGREST_CLIENT_HEADERS

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "invoices"

FX: dict = {}
HTTP: httpx.Client | None = None
# Every response the shared httpx client receives, newest last (postgrest-py's APIResponse and
# APIError carry neither the HTTP status nor the response headers, so the tests read them here).
RESPONSES: list[httpx.Response] = []

BTPAY_LINES = [
    {"description": "Consulting (1 hour)", "quantity": 1, "unit_price": "150.00"},
    {"description": "Hardware wallet setup", "quantity": 2, "unit_price": "25.00"},
]
# Fields of an invoice that only its merchant may see.
PRIVATE_FIELDS = {"merchant_id", "customer_email", "customer_name", "customer_company",
                  "customer_address", "metadata", "order_id", "callback_url", "callback_secret"}


def _record(response: httpx.Response) -> None:
    RESPONSES.append(response)


def _load_fixture() -> dict:
    path = os.environ.get("FIXTURE")
    if path:
        return json.loads(Path(path).read_text())
    out = subprocess.run(["bash", "tests/http/fixture.sh", "postgrest-py"], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


def _wait_for_server(url: str, seconds: float = 120.0) -> None:
    """PostgREST may be restarting (a colleague rebuilding): wait for it instead of failing."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(url + "/", timeout=5)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(5)


def setUpModule() -> None:
    global HTTP
    FX.update(_load_fixture())
    _wait_for_server(FX["url"])
    HTTP = httpx.Client(base_url=FX["url"], timeout=30, event_hooks={"response": [_record]})


def tearDownModule() -> None:
    if HTTP is not None:
        HTTP.close()


def client(key: str | None = None, *, bearer: bool = False,
           extra_headers: dict[str, str] | None = None) -> SyncPostgrestClient:
    """A postgrest-py client for schema invoices; the key goes in X-API-Key, or with bearer=True
    through the library's auth() (Authorization: Bearer). All clients share one httpx client."""
    headers = dict(DEFAULT_POSTGREST_CLIENT_HEADERS)
    if key is not None and not bearer:
        headers["X-API-Key"] = key
    headers.update(extra_headers or {})
    c = SyncPostgrestClient(FX["url"], schema=SCHEMA, headers=headers, http_client=HTTP)
    if key is not None and bearer:
        c.auth(key)
    return c


def last_response() -> httpx.Response:
    return RESPONSES[-1]


def lines_of(n: int, price: str = "1.00") -> list[dict]:
    return [{"description": f"item {i}", "quantity": 1, "unit_price": price} for i in range(n)]


class InvoicesApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.a = client(FX["a"]["key"])
        cls.b = client(FX["b"]["key"])
        cls.anon = client()
        cls.b_invoice = FX["b"]["invoice"]

    # ---------------------------------------------------------------------------- helpers
    def assertApiError(self, call, status: int, code: str) -> APIError:
        """call() must raise APIError with this SQLSTATE, answered with this HTTP status."""
        before = len(RESPONSES)
        with self.assertRaises(APIError) as cm:
            call()
        self.assertEqual(len(RESPONSES), before + 1, "exactly one HTTP request expected")
        self.assertEqual(cm.exception.code, code, cm.exception.json())
        self.assertEqual(last_response().status_code, status, cm.exception.json())
        return cm.exception

    def assertBadFields(self, err: APIError, fields: list[str]) -> None:
        self.assertIsInstance(err.details, str)
        errors = json.loads(err.details)["errors"]
        self.assertEqual([e["field"] for e in errors], fields, err.details)
        for e in errors:
            self.assertTrue(e["message"], err.details)

    def assertRateLimitHeaders(self, response: httpx.Response, limit: int = 100000,
                               remaining: int | None = None) -> None:
        h = response.headers
        self.assertEqual(h.get("X-RateLimit-Limit"), str(limit), dict(h))
        if remaining is not None:
            self.assertEqual(h.get("X-RateLimit-Remaining"), str(remaining), dict(h))
        self.assertTrue(0 <= int(h["X-RateLimit-Remaining"]) < limit, dict(h))
        reset = int(h["X-RateLimit-Reset"])
        now = time.time()
        self.assertTrue(now - 2 <= reset <= now + 62, (reset, now))

    def count_invoices(self, c: SyncPostgrestClient | None = None) -> int:
        # GET, not head=True: PostgREST 12.0.2 closes the connection after every HEAD response
        # without a Connection: close header, so the next request on the pooled connection is
        # now and then reset (httpx.ReadError); see the suite's report.
        res = (c or self.a).from_("invoices").select("id", count="exact").limit(1).execute()
        self.assertIsInstance(res.count, int)
        return res.count

    def create(self, params: dict, c: SyncPostgrestClient | None = None) -> dict:
        res = (c or self.a).rpc("create_invoice", params).execute()
        self.assertEqual(last_response().status_code, 200)
        return res.data

    def b_invoice_row(self) -> dict:
        rows = self.b.from_("invoices").select("*").eq("id", self.b_invoice["id"]).execute().data
        self.assertEqual(len(rows), 1)
        return rows[0]

    # ---------------------------------------------------------------------------- 1. keys
    def test_x_api_key_header_authenticates(self):
        res = client(FX["a"]["key"]).from_("invoices").select("id,merchant_id").execute()
        self.assertEqual(last_response().status_code, 200)
        self.assertRateLimitHeaders(last_response())
        self.assertEqual(last_response().request.headers["X-API-Key"], FX["a"]["key"])
        self.assertNotIn("Authorization", last_response().request.headers)
        self.assertTrue(res.data)
        self.assertEqual({r["merchant_id"] for r in res.data}, {FX["a"]["id"]})

    def test_authorization_bearer_via_auth_authenticates(self):
        c = client(FX["a"]["key"], bearer=True)
        inv = self.create({"lines": lines_of(1, "7.00")}, c)
        self.assertEqual(last_response().request.headers["Authorization"], "Bearer " + FX["a"]["key"])
        self.assertNotIn("X-API-Key", last_response().request.headers)
        self.assertRateLimitHeaders(last_response())
        self.assertEqual(inv["merchant_id"], FX["a"]["id"])
        rows = c.from_("invoices").select("id,total").eq("id", inv["id"]).execute().data
        self.assertEqual(rows, [{"id": inv["id"], "total": 7.0}])

    def test_missing_key_is_401_28000(self):
        err = self.assertApiError(lambda: self.anon.from_("invoices").select("id").execute(), 401, "28000")
        self.assertEqual(err.message, "an API key is required")
        self.assertApiError(lambda: self.anon.rpc("create_invoice", {"lines": lines_of(1)}).execute(),
                            401, "28000")

    def test_invalid_key_is_401_28000(self):
        bad = client("inv_not-a-real-key")
        err = self.assertApiError(lambda: bad.from_("invoices").select("id").execute(), 401, "28000")
        self.assertEqual(err.message, "invalid API key")

    # ---------------------------------------------------------------------------- 2. create
    def test_create_invoice_living_invoices_payload_with_aliases_is_draft_500(self):
        inv = self.create({"to_email": "customer@example.com",
                           "items": [{"description": "Web Design", "unit_price": 500}]})
        self.assertRateLimitHeaders(last_response())
        self.assertEqual(inv["status"], "draft")
        self.assertEqual(inv["merchant_id"], FX["a"]["id"])
        self.assertEqual(inv["currency"], "USD")
        self.assertEqual(inv["customer_email"], "customer@example.com")
        self.assertEqual(inv["subtotal"], "500.00")
        self.assertEqual(inv["tax_amount"], "0.00")
        self.assertEqual(inv["discount_amount"], "0.00")
        self.assertEqual(inv["total"], "500.00")
        self.assertEqual(inv["amount_paid"], "0.00")
        self.assertEqual(inv["amount_due"], "500.00")
        self.assertRegex(inv["invoice_number"], r"^INV-\d{4,}$")
        self.assertEqual([(l["description"], l["quantity"], l["amount"]) for l in inv["lines"]],
                         [("Web Design", "1", "500.00")])
        self.assertTrue(inv["hosted_url"].endswith("/i/" + inv["slug"]), inv["hosted_url"])
        # the view shows the same invoice
        row = self.a.from_("invoices").select("id,status,total,customer_email").eq("id", inv["id"]).single().execute().data
        self.assertEqual(row, {"id": inv["id"], "status": "draft", "total": 500.0,
                               "customer_email": "customer@example.com"})

    def test_create_invoice_btpay_example_totals_220(self):
        inv = self.create({"lines": BTPAY_LINES, "customer_email": "alice@example.com", "tax_rate": 10})
        self.assertEqual(inv["status"], "draft")
        self.assertEqual(inv["subtotal"], "200.00")
        self.assertEqual(inv["tax_amount"], "20.00")
        self.assertEqual(inv["total"], "220.00")
        self.assertEqual(inv["amount_due"], "220.00")
        self.assertEqual([(l["description"], l["quantity"], l["unit_price"], l["amount"]) for l in inv["lines"]],
                         [("Consulting (1 hour)", "1", "150.00", "150.00"),
                          ("Hardware wallet setup", "2", "25.00", "50.00")])
        lines = (self.a.from_("invoice_lines").select("position,description,quantity,amount")
                 .eq("invoice_id", inv["id"]).order("position").execute().data)
        self.assertEqual(lines, [
            {"position": 1, "description": "Consulting (1 hour)", "quantity": 1, "amount": 150.0},
            {"position": 2, "description": "Hardware wallet setup", "quantity": 2, "amount": 50.0},
        ])

    def test_create_invoice_jpy_rounds_half_away_from_zero_to_0_decimals(self):
        inv = self.create({"currency": "JPY",
                           "lines": [{"description": "Ramen", "quantity": 1, "unit_price": 1234.5}]})
        self.assertEqual(inv["currency"], "JPY")
        self.assertEqual(inv["lines"][0]["amount"], "1235")
        self.assertEqual(inv["subtotal"], "1235")
        self.assertEqual(inv["tax_amount"], "0")
        self.assertEqual(inv["total"], "1235")
        self.assertEqual(inv["amount_due"], "1235")

    def test_create_invoice_with_send_true_is_pending(self):
        inv = self.create({"lines": BTPAY_LINES, "tax_rate": 10, "send": True})
        self.assertEqual(inv["status"], "pending")
        self.assertEqual(inv["total"], "220.00")
        self.assertIsNotNone(inv["finalized_at"])

    # ---------------------------------------------------------------------------- 3. list
    def test_list_filters_by_status_with_exact_count_and_paginates(self):
        tag = f"page-{uuid.uuid4().hex[:8]}-"
        created = [self.create({"lines": lines_of(1, f"{i + 1}.00"), "order_id": f"{tag}{i}",
                                "send": i % 2 == 0}) for i in range(5)]
        pending_ids = [inv["id"] for inv in created if inv["status"] == "pending"]
        self.assertEqual([inv["status"] for inv in created], ["pending", "draft", "pending", "draft", "pending"])

        def page(**kw):
            q = (self.a.from_("invoices").select("id,status,order_id,total", count="exact")
                 .like("order_id", f"{tag}%").eq("status", "pending").order("order_id"))
            if "limit" in kw:
                q = q.limit(kw["limit"])
            if "offset" in kw:
                q = q.offset(kw["offset"])
            if "range" in kw:
                q = q.range(*kw["range"])
            return q.execute()

        everything = page()
        self.assertEqual(everything.count, 3)
        self.assertEqual([r["id"] for r in everything.data], pending_ids)
        self.assertEqual([r["total"] for r in everything.data], [1.0, 3.0, 5.0])
        first = page(limit=2, offset=0)
        self.assertEqual(first.count, 3)
        self.assertEqual([r["id"] for r in first.data], pending_ids[:2])
        self.assertEqual(last_response().headers["Content-Range"], "0-1/3")
        second = page(limit=2, offset=2)
        self.assertEqual(second.count, 3)
        self.assertEqual([r["id"] for r in second.data], pending_ids[2:])
        self.assertEqual(last_response().headers["Content-Range"], "2-2/3")
        by_range = page(range=(1, 2))
        self.assertEqual([r["id"] for r in by_range.data], pending_ids[1:3])
        drafts = (self.a.from_("invoices").select("id", count="exact").like("order_id", f"{tag}%")
                  .eq("status", "draft").execute())
        self.assertEqual(drafts.count, 2)
        self.assertEqual({r["id"] for r in drafts.data}, {created[1]["id"], created[3]["id"]})

    def test_list_returns_at_most_100_rows_per_response(self):
        for _ in range(max(0, 101 - self.count_invoices())):
            self.create({"lines": lines_of(1)})
        total = self.count_invoices()
        self.assertGreaterEqual(total, 101)
        res = self.a.from_("invoices").select("id", count="exact").limit(1000).execute()
        self.assertEqual(len(res.data), 100)
        self.assertEqual(res.count, total)
        res = self.a.from_("invoices").select("id").execute()
        self.assertEqual(len(res.data), 100)

    # ---------------------------------------------------------------------------- 4. lifecycle
    def test_lifecycle_draft_finalize_cancel_and_audit_log(self):
        inv = self.create({"lines": BTPAY_LINES, "tax_rate": 10})
        self.assertEqual(inv["status"], "draft")
        fin = self.a.rpc("finalize_invoice", {"ref": inv["invoice_number"]}).execute().data
        self.assertEqual((fin["id"], fin["status"]), (inv["id"], "pending"))
        self.assertIsNotNone(fin["finalized_at"])
        st = self.a.rpc("invoice_status", {"ref": inv["slug"]}).execute().data
        self.assertEqual((st["id"], st["status"], st["total"]), (inv["id"], "pending", "220.00"))
        err = self.assertApiError(lambda: self.a.rpc("finalize_invoice", {"ref": inv["id"]}).execute(), 409, "23514")
        self.assertIn("only a draft invoice can be finalized", err.message)
        can = self.a.rpc("cancel_invoice", {"ref": inv["id"]}).execute().data
        self.assertEqual((can["id"], can["status"]), (inv["id"], "cancelled"))
        self.assertIsNotNone(can["cancelled_at"])
        err = self.assertApiError(lambda: self.a.rpc("cancel_invoice", {"ref": inv["slug"]}).execute(), 409, "23514")
        self.assertEqual(err.message, "illegal invoice status transition: cancelled → cancelled")
        self.assertRateLimitHeaders(last_response())
        self.assertEqual(self.a.rpc("invoice_status", {"ref": inv["invoice_number"]}).execute().data["status"],
                         "cancelled")

        key_id = (self.a.from_("api_keys").select("id").eq("prefix", self._fixture_key_prefix())
                  .single().execute().data["id"])
        audit = (self.a.from_("audit_log").select("invoice_id,invoice_number,event,from_status,to_status,actor")
                 .eq("invoice_id", inv["id"]).order("id").execute().data)
        actor = f"api_key:{key_id}"
        self.assertEqual(audit, [
            {"invoice_id": inv["id"], "invoice_number": inv["invoice_number"], "event": "invoice.created",
             "from_status": None, "to_status": "draft", "actor": actor},
            {"invoice_id": inv["id"], "invoice_number": inv["invoice_number"], "event": "invoice.finalized",
             "from_status": "draft", "to_status": "pending", "actor": actor},
            {"invoice_id": inv["id"], "invoice_number": inv["invoice_number"], "event": "invoice.cancelled",
             "from_status": "pending", "to_status": "cancelled", "actor": actor},
        ])

    def _fixture_key_prefix(self) -> str:
        # the key's "kid" claim is its public prefix (inv_…)
        payload = FX["a"]["key"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return claims["kid"]

    # ---------------------------------------------------------------------------- 5. validation
    def test_validation_errors_are_400_22023_naming_the_field_and_create_nothing(self):
        cases = {
            "missing lines": ({"customer_email": "x@example.com"}, ["lines"]),
            "more than 100 lines": ({"lines": lines_of(101)}, ["lines"]),
            "negative quantity": ({"lines": [{"description": "x", "quantity": -1, "unit_price": "1.00"}]},
                                  ["lines[0].quantity"]),
            "non-numeric unit_price": ({"lines": [{"description": "x", "quantity": 1, "unit_price": "abc"}]},
                                       ["lines[0].unit_price"]),
            "unknown currency": ({"lines": lines_of(1), "currency": "XXX"}, ["currency"]),
            "discount above subtotal": ({"lines": lines_of(1, "10.00"), "discount_amount": "10.01"},
                                        ["discount_amount"]),
            "bad email": ({"lines": lines_of(1), "customer_email": "not-an-email"}, ["customer_email"]),
            "due_date before issue_date": ({"lines": lines_of(1), "issue_date": "2026-03-10",
                                            "due_date": "2026-03-09"}, ["due_date"]),
        }
        before = self.count_invoices()
        for name, (params, fields) in cases.items():
            with self.subTest(name):
                err = self.assertApiError(lambda: self.a.rpc("create_invoice", params).execute(), 400, "22023")
                self.assertRateLimitHeaders(last_response())
                self.assertBadFields(err, fields)
                self.assertTrue(err.message.startswith("invalid invoice: "), err.message)
        self.assertEqual(self.count_invoices(), before)

    # ---------------------------------------------------------------------------- 6. scopes
    def new_key(self, scopes: list[str], name: str, per_minute: int | None = None) -> dict:
        k = self.a.rpc("create_api_key", {"name": name, "scopes": scopes,
                                          "rate_limit_per_minute": per_minute}).execute().data
        self.assertEqual(last_response().status_code, 200)
        self.assertEqual((k["name"], k["scopes"], k["rate_limit_per_minute"]), (name, scopes, per_minute))
        self.assertTrue(k["prefix"].startswith("inv_"), k)
        self.assertTrue(k["api_key"], k)
        return k

    def test_read_only_key_lists_but_cannot_create_403(self):
        ro = client(self.new_key(["read"], "read only", per_minute=500)["api_key"])
        ro.from_("invoices").select("id").limit(1).execute()
        self.assertEqual(last_response().status_code, 200)
        self.assertRateLimitHeaders(last_response(), limit=500, remaining=499)  # its 1st request
        window = last_response().headers["X-RateLimit-Reset"]
        before = self.count_invoices()
        err = self.assertApiError(lambda: ro.rpc("create_invoice", {"lines": lines_of(1)}).execute(), 403, "42501")
        self.assertEqual(err.message, "this API key lacks the write scope")
        # its 2nd request counts too (unless a new minute window began in between)
        same_window = last_response().headers["X-RateLimit-Reset"] == window
        self.assertRateLimitHeaders(last_response(), limit=500, remaining=498 if same_window else 499)
        self.assertApiError(lambda: ro.from_("api_keys").select("id").execute(), 403, "42501")
        self.assertEqual(self.count_invoices(), before)

    def test_write_only_key_creates_but_cannot_list_403(self):
        wo = client(self.new_key(["write"], "write only")["api_key"])
        inv = self.create({"lines": lines_of(1, "3.00")}, wo)
        self.assertEqual((inv["status"], inv["total"]), ("draft", "3.00"))
        err = self.assertApiError(lambda: wo.from_("invoices").select("id").execute(), 403, "42501")
        self.assertEqual(err.message, "this API key lacks the read scope")
        self.assertApiError(lambda: wo.rpc("invoice_status", {"ref": inv["id"]}).execute(), 403, "42501")

    def test_revoked_key_is_401(self):
        k = self.new_key(["read"], "to revoke")
        c = client(k["api_key"])
        c.from_("invoices").select("id").limit(1).execute()
        self.assertEqual(last_response().status_code, 200)
        revoked = self.a.rpc("revoke_api_key", {"id": k["id"]}).execute().data
        self.assertEqual((revoked["id"], revoked["prefix"]), (k["id"], k["prefix"]))
        self.assertIsNotNone(revoked["revoked_at"])
        err = self.assertApiError(lambda: c.from_("invoices").select("id").execute(), 401, "28000")
        self.assertEqual(err.message, "this API key was revoked")
        self.assertApiError(lambda: client(k["api_key"], bearer=True).from_("invoices").select("id").execute(),
                            401, "28000")
        listed = self.a.from_("api_keys").select("*").eq("id", k["id"]).single().execute().data
        self.assertEqual((listed["active"], listed["prefix"], listed["scopes"]), (False, k["prefix"], ["read"]))
        self.assertNotIn("api_key", listed)
        self.assertNotIn("key_hash", listed)
        self.assertNotIn(k["api_key"], json.dumps(listed))

    # ---------------------------------------------------------------------------- 7. tenancy
    def test_other_merchants_invoice_is_invisible_in_views(self):
        bid = self.b_invoice["id"]
        self.assertEqual(self.a.from_("invoices").select("*").eq("id", bid).execute().data, [])
        self.assertEqual(self.a.from_("invoices").select("id", count="exact")
                         .eq("slug", self.b_invoice["slug"]).execute().count, 0)
        self.assertEqual(self.a.from_("invoice_lines").select("*").eq("invoice_id", bid).execute().data, [])
        self.assertEqual(self.a.from_("audit_log").select("*").eq("invoice_id", bid).execute().data, [])
        self.assertEqual(self.a.from_("invoices").select("id").eq("merchant_id", FX["b"]["id"]).execute().data, [])
        self.assertEqual(self.a.from_("api_keys").select("id").eq("merchant_id", FX["b"]["id"]).execute().data, [])

    def test_other_merchants_invoice_is_404_to_rpcs(self):
        for fn in ("invoice_status", "cancel_invoice", "finalize_invoice"):
            for ref in (self.b_invoice["id"], self.b_invoice["slug"]):
                with self.subTest(fn=fn, ref=ref):
                    err = self.assertApiError(lambda: self.a.rpc(fn, {"ref": ref}).execute(), 404, "P0002")
                    self.assertEqual(err.message, f'invoice "{ref}" not found')
                    self.assertNotIn("Secret work", json.dumps(err.json()))
        row = self.b_invoice_row()
        self.assertEqual((row["status"], row["cancelled_at"]), ("pending", None))

    def test_update_and_delete_of_other_merchants_invoice_fail_and_leave_it_unchanged(self):
        bid = self.b_invoice["id"]
        before = self.b_invoice_row()
        # The API contract only says "an error": the status and code are pinned by the
        # expected-failure test below, not here.
        with self.assertRaises(APIError):
            self.a.from_("invoices").update({"status": "cancelled", "total": 0}).eq("id", bid).execute()
        self.assertEqual(last_response().request.method, "PATCH")
        self.assertTrue(400 <= last_response().status_code < 500, last_response().status_code)
        with self.assertRaises(APIError):
            self.a.from_("invoices").delete().eq("id", bid).execute()
        self.assertEqual(last_response().request.method, "DELETE")
        self.assertTrue(400 <= last_response().status_code < 500, last_response().status_code)
        after = self.b_invoice_row()
        self.assertEqual(after, before)
        self.assertEqual((after["status"], after["total"], after["metadata"], after["customer_email"]),
                         ("pending", 999.0, {"internal": "B only"}, "client-of-b@example.com"))

    # The views are read-only: a write with a valid key is 405 (not 401, which would mean a bad
    # key) and, like every keyed response, carries the rate-limit headers.
    def test_write_on_a_view_with_a_valid_key_is_405_with_rate_limit_headers(self):
        own = self.create({"lines": lines_of(1)})
        for call in (lambda: self.a.from_("invoices").update({"notes": "x"}).eq("id", own["id"]).execute(),
                     lambda: self.a.from_("invoices").delete().eq("id", own["id"]).execute()):
            with self.assertRaises(APIError):
                call()
            self.assertEqual(last_response().status_code, 405)
            self.assertRateLimitHeaders(last_response())
        rows = self.a.from_("invoices").select("id,notes").eq("id", own["id"]).execute().data
        self.assertEqual(rows, [{"id": own["id"], "notes": None}])

    # ---------------------------------------------------------------------------- 8. idempotency
    def test_idempotency_key_replays_the_first_response(self):
        idem = client(FX["a"]["key"], extra_headers={"Idempotency-Key": str(uuid.uuid4())})
        params = {"lines": BTPAY_LINES, "tax_rate": 10, "customer_email": "replay@example.com"}
        before = self.count_invoices()
        first = self.create(params, idem)
        self.assertNotIn("Idempotent-Replayed", last_response().headers)
        second = self.create(params, idem)
        self.assertEqual(last_response().headers.get("Idempotent-Replayed"), "true")
        self.assertRateLimitHeaders(last_response())
        self.assertEqual(second["id"], first["id"])
        self.assertEqual(second["invoice_number"], first["invoice_number"])
        self.assertEqual(second, first)
        self.assertEqual(self.count_invoices(), before + 1)

    def test_idempotency_key_with_a_different_body_is_409_23505(self):
        idem = client(FX["a"]["key"], extra_headers={"Idempotency-Key": str(uuid.uuid4())})
        before = self.count_invoices()
        first = self.create({"lines": lines_of(1, "10.00")}, idem)
        err = self.assertApiError(lambda: idem.rpc("create_invoice", {"lines": lines_of(1, "11.00")}).execute(),
                                  409, "23505")
        self.assertBadFields(err, ["Idempotency-Key"])
        self.assertEqual(self.count_invoices(), before + 1)
        self.assertEqual(self.a.from_("invoices").select("total").eq("id", first["id"]).execute().data,
                         [{"total": 10.0}])

    # ---------------------------------------------------------------------------- 9. public
    def check_public_row(self, rows: list[dict]) -> None:
        self.assertEqual(last_response().status_code, 200)
        self.assertEqual(len(rows), 1, rows)
        row = rows[0]
        self.assertEqual((row["id"], row["slug"], row["invoice_number"]),
                         (self.b_invoice["id"], self.b_invoice["slug"], self.b_invoice["invoice_number"]))
        self.assertEqual((row["status"], row["currency"], row["total"], row["amount_due"]),
                         ("pending", "USD", 999.0, 999.0))
        self.assertEqual(row["merchant_name"], self.b_invoice_row()["merchant"]["name"])
        self.assertEqual(PRIVATE_FIELDS & set(row), set())
        dumped = json.dumps(row)
        for secret in ("B only", "b-callback-secret", "client-of-b@example.com", "127.0.0.1:9/b-hook",
                       FX["b"]["id"]):
            self.assertNotIn(secret, dumped)

    def test_public_invoices_without_key_by_slug(self):
        rows = self.anon.from_("public_invoices").select("*").eq("slug", self.b_invoice["slug"]).execute().data
        self.assertNotIn("X-API-Key", last_response().request.headers)
        self.assertNotIn("Authorization", last_response().request.headers)
        self.check_public_row(rows)

    def test_public_invoices_without_key_by_id(self):
        rows = self.anon.from_("public_invoices").select("*").eq("id", self.b_invoice["id"]).execute().data
        self.check_public_row(rows)

    def test_public_invoices_hide_drafts(self):
        draft = self.create({"lines": lines_of(1)})
        self.assertEqual(self.anon.from_("public_invoices").select("id").eq("id", draft["id"]).execute().data, [])
        self.a.rpc("finalize_invoice", {"ref": draft["id"]}).execute()
        rows = self.anon.from_("public_invoices").select("id,status").eq("id", draft["id"]).execute().data
        self.assertEqual(rows, [{"id": draft["id"], "status": "pending"}])


if __name__ == "__main__":
    unittest.main()
