#!/usr/bin/env node
// Starts the Cosmos DB API server (@vercel/cosmosdb-server, pinned in
// package-lock.json) on a free loopback port for the store's tests, through the
// package's JS API (its Account and routes), with no edits to the package.
//
// It answers like the package's own request handler, plus fixes for the
// server's bugs that the Rust SDK trips over:
//   1. partition key range ids are numbers; the SDK wants strings;
//   2. reading a missing document answers 500 (a TypeError); it must be 404;
//   3. a cross-partition query is refused unless its header is set;
//   4. a partition-scoped query ignores the partition key header (here the
//      results are filtered by the header's value: a page may then hold fewer
//      items than asked for, which the protocol allows);
//   5. the account advertises https endpoints while TLS is off;
// and keeps connections alive (the package's handler closes them by default).
//
// Test hooks, under /_launcher/ (a path the Cosmos DB API never uses):
//   GET  /_launcher/requests  -> {"total": n, "byRoute": {...}} requests served
//   POST /_launcher/faults    {"status": 429, "times": 3, "retryAfterMs": 5}
//        the next `times` document requests answer `status` (with
//        x-ms-retry-after-ms), as a throttled or unavailable account would.
//
// LAUNCHER_LOG=1 logs every answer on stderr.
//
// Prints one JSON line {"port": N} on stdout when ready; exits when its stdin
// closes (the test process that started it is gone) or on SIGTERM.
"use strict";

const http = require("http");
const crypto = require("crypto");
const Account = require("@vercel/cosmosdb-server/lib/account").default;
const routes = require("@vercel/cosmosdb-server/lib/routes").default;
const { parsePartitionKey } = require("@vercel/cosmosdb-server/lib/utils/get-partition-from-header");

let account;
const counts = { total: 0, byRoute: {} };
let fault = null;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", c => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function send(res, status, body, headers = {}) {
  res.statusCode = status;
  if (process.env.LAUNCHER_LOG) {
    const req = res.req;
    console.error(`${req.method} ${req.url} -> ${status} ${JSON.stringify(body).slice(0, 160)}`);
  }
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader("content-type", "application/json");
  res.setHeader("connection", "keep-alive");
  res.setHeader("x-ms-activity-id", crypto.randomUUID());
  res.setHeader("x-ms-request-charge", "1");
  res.end(JSON.stringify(body));
}

function routeName(req) {
  const path = req.url.split("?")[0];
  const kind = path
    .split("/")
    .filter((_, i) => i % 2 === 1)
    .join("/");
  const q = req.headers["x-ms-documentdb-isquery"] ? " query" : "";
  return `${req.method} /${kind}${q}`;
}

async function launcherHook(req, res) {
  if (req.method === "GET" && req.url === "/_launcher/requests") {
    return send(res, 200, counts);
  }
  if (req.method === "POST" && req.url === "/_launcher/faults") {
    const body = JSON.parse((await readBody(req)).toString() || "{}");
    fault = body.times > 0 ? body : null;
    return send(res, 200, { ok: true });
  }
  return send(res, 404, { message: "no such launcher hook" });
}

async function handle(req, res) {
  if (req.url.startsWith("/_launcher/")) return launcherHook(req, res);
  counts.total += 1;
  const name = routeName(req);
  counts.byRoute[name] = (counts.byRoute[name] || 0) + 1;

  const path = req.url.split("?")[0];
  if (fault && path.includes("/docs")) {
    const f = fault;
    f.times -= 1;
    if (f.times <= 0) fault = null;
    return send(
      res,
      f.status,
      { code: f.status === 429 ? "TooManyRequests" : "ServiceUnavailable", message: "injected by the test" },
      { "x-ms-retry-after-ms": String(f.retryAfterMs || 1), "x-ms-substatus": "0" }
    );
  }

  const isQuery = Boolean(req.headers["x-ms-documentdb-isquery"]);
  const scopedPk = req.headers["x-ms-documentdb-partitionkey"];
  // Fix 3: the SDK plans cross-partition queries itself and sends them to
  // the one range this server has.
  if (isQuery && !scopedPk) {
    req.headers["x-ms-documentdb-query-enablecrosspartition"] = "true";
  }

  const route = routes(req);
  if (!route) return send(res, 400, { message: "no route" });
  const [params, handler] = route;

  // Fix 2: a missing document (or collection) is a 404, checked before the
  // package's handler dereferences it.
  if (req.method === "GET" && params.docId !== undefined) {
    const coll = account.database(params.dbId).collection(params.collId);
    if (!coll.read() || !coll.document(params.docId, partitionOf(req, params.docId)).read()) {
      return send(res, 404, {
        code: "NotFound",
        message: "Entity with the specified id does not exist in the system."
      });
    }
  }

  let body;
  try {
    body = await handler(account, req, res, params);
  } catch (err) {
    console.error(err);
    res.statusCode = 500;
    body = { message: err.message };
  }
  if (res.statusCode > 399 && body && !body.message) body.message = "";

  // Fix 1: partition key range ids as strings.
  if (body && Array.isArray(body.PartitionKeyRanges)) {
    for (const r of body.PartitionKeyRanges) {
      r.id = String(r.id);
      if (Array.isArray(r.parents)) r.parents = r.parents.map(String);
    }
  }
  // Fix 4: a partition-scoped query returns only that partition's documents.
  if (isQuery && scopedPk && body && Array.isArray(body.Documents)) {
    const coll = account.database(params.dbId).collection(params.collId).read();
    const paths = ((coll && coll.partitionKey) || {}).paths || [];
    let wanted;
    try {
      wanted = JSON.parse(scopedPk);
    } catch (_) {
      wanted = null;
    }
    if (Array.isArray(wanted) && paths.length === wanted.length) {
      body.Documents = body.Documents.filter(doc =>
        paths.every((p, i) => valueAt(doc, p) === wanted[i])
      );
      body._count = body.Documents.length;
      res.setHeader("x-ms-item-count", String(body._count));
    }
  }
  // Fix 5: advertise the endpoint the server really listens on (plain http).
  if (path === "/" && body && body.writableLocations) {
    for (const loc of [...body.writableLocations, ...body.readableLocations]) {
      loc.databaseAccountEndpoint = loc.databaseAccountEndpoint.replace(/^https:/, "http:");
    }
  }
  if (body && body._etag) res.setHeader("etag", body._etag);
  // As the package's own handler: an incremental feed (the SDK's refresh of
  // partition key ranges) is "not modified" once the client holds an ETag.
  if (req.headers["a-im"] && res.statusCode === 200) {
    if (req.headers["if-none-match"]) res.statusCode = 304;
    res.setHeader("etag", "1");
  }
  send(res, res.statusCode, body);
}

function valueAt(doc, path) {
  return path
    .split("/")
    .filter(Boolean)
    .reduce((v, k) => (v === undefined || v === null ? undefined : v[k]), doc);
}

function partitionOf(req, docId) {
  const header = req.headers["x-ms-documentdb-partitionkey"];
  if (!header) return docId;
  try {
    return parsePartitionKey(header, docId);
  } catch (_) {
    return docId;
  }
}

const server = http.createServer({ keepAlive: true }, (req, res) => {
  handle(req, res).catch(err => {
    console.error(err);
    if (!res.writableEnded) send(res, 500, { message: String(err && err.message) });
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, "127.0.0.1", () => {
  const { port } = server.address();
  account = new Account("127.0.0.1", port);
  process.stdout.write(JSON.stringify({ port }) + "\n");
});

process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
