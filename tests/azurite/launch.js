#!/usr/bin/env node
// Starts Azurite's Blob service (npm `azurite`, pinned in package-lock.json)
// for the tests: its own command line, unchanged, run in this process with
// the arguments given here (e.g. --blobPort 0 --oauth basic --cert --key
// --inMemoryPersistence --disableTelemetry). Azurite prints
// "Azurite Blob service successfully listens on https://HOST:PORT" once
// ready. This launcher adds one thing: it exits when its stdin closes, so a
// server shared by a whole test binary goes when the test process goes.
"use strict";

process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
require("azurite/dist/src/blob/main.js");
