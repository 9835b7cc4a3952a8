// wsroute.d.ts: typical uses compile, mistakes do not (tsc --noEmit, from node_modules).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { HERE } from "./helpers.mjs";

const TSC = join(HERE, "node_modules", "typescript", "bin", "tsc");

function tsc(project) {
  const result = spawnSync(process.execPath, [TSC, "--noEmit", "--pretty", "false", "-p", join(HERE, "types", project)], {
    cwd: HERE,
    encoding: "utf8",
    timeout: 60000,
  });
  assert.equal(result.error, undefined, String(result.error));
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

test("usage.ts compiles against wsroute.d.ts (typed and loose, DOM and ws WebSockets)", () => {
  const { status, output } = tsc("tsconfig.json");
  assert.equal(status, 0, output);
});

test("wsroute.d.ts needs neither the DOM library nor @types/node", () => {
  const { status, output } = tsc("tsconfig.bare.json");
  assert.equal(status, 0, output);
});

test("mistakes.ts fails to compile, on exactly the lines marked // error", () => {
  const { status, output } = tsc("tsconfig.mistakes.json");
  assert.notEqual(status, 0, "the mistakes compiled");
  const marked = readFileSync(join(HERE, "types", "mistakes.ts"), "utf8")
    .split("\n")
    .flatMap((line, i) => (line.trimEnd().endsWith("// error") ? [i + 1] : []));
  const failed = [...new Set([...output.matchAll(/mistakes\.ts\((\d+),\d+\): error/g)].map((m) => Number(m[1])))];
  assert.ok(marked.length >= 10);
  assert.deepEqual(failed, marked, output);
});
