// The VS Code client for `orcac lsp`: starts the language server over stdio for .orca files.
// Everything else (diagnostics, formatting, hover, definitions, completion) is the server's.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function serverOptions() {
  // `orcac` from PATH unless the user names another, e.g. ${workspaceFolder}/.venv/bin/orcac.
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? "";
  const setting = vscode.workspace.getConfiguration("orcac").get("path") || "orcac";
  const command = setting.split("${workspaceFolder}").join(folder);
  return { command, args: ["lsp"], transport: TransportKind.stdio };
}

async function activate(context) {
  client = new LanguageClient("orcac", "orcac language server", serverOptions(), {
    documentSelector: [{ scheme: "file", language: "orca" }],
  });
  context.subscriptions.push(
    vscode.commands.registerCommand("orcac.restartServer", () => client.restart()),
  );
  await client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
