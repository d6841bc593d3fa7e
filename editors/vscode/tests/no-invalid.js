// Tokenizes every .orca file under the given folders with the grammar and fails on any
// token scoped `invalid`: the grammar must read every shipped spec as the compiler does.
"use strict";

const fs = require("fs");
const path = require("path");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

const GRAMMAR = path.join(__dirname, "..", "syntaxes", "orca.tmLanguage.json");

function orcaFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return orcaFiles(full);
    return entry.name.endsWith(".orca") ? [full] : [];
  });
}

async function main(folders) {
  const wasm = fs.readFileSync(require.resolve("vscode-oniguruma/release/onig.wasm")).buffer;
  await oniguruma.loadWASM(wasm);
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async () => vsctm.parseRawGrammar(fs.readFileSync(GRAMMAR, "utf8"), GRAMMAR),
  });
  const grammar = await registry.loadGrammar("source.orca");
  const files = folders.flatMap(orcaFiles).sort();
  if (files.length === 0) throw new Error(`no .orca files under ${folders.join(", ")}`);
  const problems = [];
  for (const file of files) {
    let stack = vsctm.INITIAL;
    fs.readFileSync(file, "utf8").split(/\r?\n/).forEach((line, i) => {
      const result = grammar.tokenizeLine(line, stack);
      for (const token of result.tokens) {
        const invalid = token.scopes.find((s) => s.startsWith("invalid"));
        if (invalid) {
          const text = JSON.stringify(line.slice(token.startIndex, token.endIndex));
          problems.push(`${file}:${i + 1}:${token.startIndex + 1}: ${text} is ${invalid}`);
        }
      }
      stack = result.ruleStack;
    });
  }
  for (const p of problems) console.error(p);
  console.log(`${files.length} files tokenized, ${problems.length} invalid tokens`);
  process.exitCode = problems.length ? 1 : 0;
}

main(process.argv.slice(2)).catch((error) => {
  console.error(error);
  process.exitCode = 2;
});
