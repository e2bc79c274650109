// A Living Invoices webhook receiver: checks each delivery with the Living Invoices document's
// own snippet and appends one JSON line a delivery to the log: {"valid", "body"}.
// Usage: node receiver_living.mjs PORT SECRET LOG   (listens on 127.0.0.1 only)
import http from 'node:http';
import fs from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);

// from the Living Invoices document, as printed
const crypto = require('crypto');

function verifyWebhook(payload, signature, secret) {
  const expected = crypto
    .createHmac('sha256', secret)
    .update(payload)
    .digest('hex');
  return signature === expected;
}

const [port, secret, log] = process.argv.slice(2);
http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const payload = Buffer.concat(chunks).toString('utf8');
    const valid = verifyWebhook(payload, req.headers['x-webhook-signature'], secret);
    fs.appendFileSync(log, JSON.stringify({ valid, body: JSON.parse(payload) }) + '\n');
    res.writeHead(200).end();
  });
}).listen(Number(port), '127.0.0.1');
