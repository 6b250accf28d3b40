// Validates Azure REST request/response pairs against the specifications in
// the folder SPECS_DIR names (the third-party folder's project-fixtures-specs), with Microsoft's validator (oav's
// LiveValidator). Started once per test process; reads one JSON pair a line
// on stdin ({id, request: {method, url, headers, body}, response: {status,
// headers, body}}) and answers one line on stdout: {id, ok, operationId,
// errors: [{side, code, path, message}]}. Writes "ready" first.
"use strict";
const path = require("path");
const readline = require("readline");
// oav logs through the console: keep stdout for the protocol.
console.log = console.info = console.warn = console.debug = (...args) => console.error(...args);
const { LiveValidator } = require("oav");

if (!process.env.SPECS_DIR) throw new Error("SPECS_DIR names the folder of the specifications");
const specs = path.resolve(process.env.SPECS_DIR);
const files = process.argv.slice(2).map((f) => path.resolve(specs, f));

function issues(side, result) {
  const out = [];
  if (!result) return out;
  if (result.runtimeException) {
    out.push({
      side,
      code: result.runtimeException.code,
      path: "",
      message: result.runtimeException.message,
    });
  } else if (result.isSuccessful !== true && (result.errors || []).length === 0) {
    out.push({ side, code: "NOT_VALIDATED", path: "", message: "the validator did not validate this pair" });
  }
  for (const e of result.errors || []) {
    out.push({
      side,
      code: e.code,
      path: (e.pathsInPayload && e.pathsInPayload[0]) || "",
      message: e.message,
    });
  }
  return out;
}

async function main() {
  const validator = new LiveValidator({
    directory: specs,
    swaggerPaths: files,
    git: { shouldClone: false },
    isPathCaseSensitive: false,
    loadValidatorInInitialize: false,
  });
  await validator.initialize();
  process.stdout.write("ready\n");
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let id = null;
    try {
      const pair = JSON.parse(line);
      id = pair.id;
      const result = await validator.validateLiveRequestResponse({
        liveRequest: {
          method: pair.request.method,
          url: pair.request.url,
          headers: pair.request.headers || {},
          body: pair.request.body === null ? undefined : pair.request.body,
        },
        liveResponse: {
          statusCode: String(pair.response.status),
          headers: pair.response.headers || {},
          body: pair.response.body === null ? undefined : pair.response.body,
        },
      });
      const info = (result.requestValidationResult && result.requestValidationResult.operationInfo) || {};
      const errors = [
        ...issues("request", result.requestValidationResult),
        ...issues("response", result.responseValidationResult),
      ];
      if (result.runtimeException && errors.length === 0) {
        errors.push({ side: "pair", code: result.runtimeException.code, path: "", message: result.runtimeException.message });
      }
      process.stdout.write(
        JSON.stringify({ id, ok: errors.length === 0, operationId: info.operationId || null, errors }) + "\n",
      );
    } catch (e) {
      process.stdout.write(
        JSON.stringify({ id, ok: false, operationId: null, errors: [{ side: "pair", code: "HELPER_ERROR", path: "", message: String(e && e.message) }] }) + "\n",
      );
    }
  }
}

main().catch((e) => {
  process.stderr.write(`spec validator failed to start: ${e && e.stack}\n`);
  process.exit(1);
});
