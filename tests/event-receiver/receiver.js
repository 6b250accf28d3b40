// A release-event receiver, as a downstream system would write one: every
// POST is verified with the Standard Webhooks reference library before its
// body is trusted. Verified deliveries are recorded (a repeated webhook-id is
// recorded as a duplicate, not processed twice); refused ones are answered
// 401 with the library's reason and recorded as refused.
//
// Usage: node receiver.js <whsec_secret> [port]
// Prints `listening <port>` once it serves on 127.0.0.1 (port 0: any free one).
// GET /deliveries answers {"verified": [...], "duplicates": [...], "refused": [...]}.
"use strict";

const http = require("node:http");
const { Webhook } = require("standardwebhooks");

const secret = process.argv[2];
if (!secret) {
  console.error("usage: node receiver.js <whsec_secret>");
  process.exit(2);
}
const webhook = new Webhook(secret);
const verified = [];
const duplicates = [];
const refused = [];

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    if (req.method === "GET" && req.url === "/deliveries") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ verified, duplicates, refused }));
      return;
    }
    if (req.method !== "POST") {
      res.writeHead(405).end();
      return;
    }
    const body = Buffer.concat(chunks).toString("utf8");
    const headers = {
      "webhook-id": req.headers["webhook-id"],
      "webhook-timestamp": req.headers["webhook-timestamp"],
      "webhook-signature": req.headers["webhook-signature"],
    };
    let event;
    try {
      event = webhook.verify(body, headers);
    } catch (e) {
      refused.push({ id: headers["webhook-id"] || null, reason: String(e.message || e) });
      res.writeHead(401, { "content-type": "text/plain" });
      res.end(String(e.message || e));
      return;
    }
    const record = {
      id: headers["webhook-id"],
      timestamp: Number(headers["webhook-timestamp"]),
      contentType: req.headers["content-type"] || null,
      path: req.url,
      signature: headers["webhook-signature"],
      body,
      event,
    };
    if (verified.some((d) => d.id === record.id)) {
      duplicates.push(record);
    } else {
      verified.push(record);
    }
    res.writeHead(204).end();
  });
});

server.listen(Number(process.argv[3] || 0), "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
