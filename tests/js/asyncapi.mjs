// Checks AsyncAPI documents with the official parser (@asyncapi/parser), for
// tests/test_contracts_asyncapi.py: `node asyncapi.mjs FILE...` prints, per file, a
// JSON line {file, diagnostics: [{severity, code, message, path}]}. Severity 0 is an
// error, 1 a warning, 2 information, 3 a hint. Exit status 0 unless a file could not be read.

import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const parser = new Parser();
for (const file of process.argv.slice(2)) {
  const { diagnostics } = await parser.parse(readFileSync(file, "utf8"), { source: file });
  const shown = diagnostics.map(({ severity, code, message, path }) => ({ severity, code, message, path }));
  process.stdout.write(`${JSON.stringify({ file, diagnostics: shown })}\n`);
}
