// A fast webhook receiver for the benchmark and the crash test: answers every POST with 200
// (after DELAY_MS, default 0), and counts deliveries per X-Webhook-Id, remembering when each id
// first arrived and whether every copy of it carried the same body and a valid signature.
//
//   GET /stats  {requests, unique, duplicates, mismatched, bad_signatures, first_ms, last_ms}
//   GET /ids    {"<event id>": <first receipt, Unix ms>, …}
//   GET /secret?value=<whsec_…>   the secret to verify X-Webhook-Signature with (Node crypto)
//   GET /reset  forgets every count (after a load generator measured the receiver's capacity)
//
// Usage: node counting_receiver.mjs <port> [delay_ms]
import http from "node:http";
import crypto from "node:crypto";

const port = Number(process.argv[2] || 18950);
const delay = Number(process.argv[3] || 0);
const first = new Map(); // id -> [first ms, body digest]
let requests = 0, duplicates = 0, mismatched = 0, badSignatures = 0, firstMs = null, lastMs = null;
let secret = null;

const server = http.createServer((req, res) => {
  if (req.method === "GET") {
    const url = new URL(req.url, "http://x");
    res.setHeader("Content-Type", "application/json");
    if (url.pathname === "/secret") {
      secret = url.searchParams.get("value");
      return res.end("{}");
    }
    if (url.pathname === "/reset") {
      first.clear();
      requests = duplicates = mismatched = badSignatures = 0;
      firstMs = lastMs = null;
      return res.end("{}");
    }
    if (url.pathname === "/ids") {
      const out = {};
      for (const [id, [ms]] of first) out[id] = ms;
      return res.end(JSON.stringify(out));
    }
    return res.end(JSON.stringify({
      requests, unique: first.size, duplicates, mismatched, bad_signatures: badSignatures,
      first_ms: firstMs, last_ms: lastMs,
    }));
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const now = Date.now();
    const body = Buffer.concat(chunks);
    requests += 1;
    firstMs ??= now;
    lastMs = now;
    if (secret) {
      const expected = crypto.createHmac("sha256", secret).update(body).digest("hex");
      const got = String(req.headers["x-webhook-signature"] || "");
      if (got.length !== expected.length ||
          !crypto.timingSafeEqual(Buffer.from(got), Buffer.from(expected))) badSignatures += 1;
    }
    const id = String(req.headers["x-webhook-id"] || "");
    const digest = crypto.createHash("sha256").update(body).digest("hex");
    const seen = first.get(id);
    if (seen) {
      duplicates += 1;
      if (seen[1] !== digest) mismatched += 1;
    } else {
      first.set(id, [now, digest]);
    }
    const answer = () => { res.writeHead(200, { "Content-Type": "text/plain" }); res.end("ok"); };
    if (delay > 0) setTimeout(answer, delay); else answer();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, "127.0.0.1");
