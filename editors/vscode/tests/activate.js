// Activates extension.js outside VS Code and prints, as JSON, how it would start the server.
// `vscode` (the editor host) and the client library are stand-ins here: the test is of what
// extension.js asks for; tests/editor/test_vscode.py then starts that command for real.
// Usage: node tests/activate.js WORKSPACE_FOLDER ORCAC_PATH_SETTING
"use strict";

const Module = require("module");
const path = require("path");

const [folder, setting] = process.argv.slice(2);
const started = {};
const stand_ins = {
  vscode: {
    workspace: {
      workspaceFolders: [{ uri: { fsPath: folder } }],
      getConfiguration: (section) => ({ get: (key) => (section === "orcac" && key === "path" ? setting : undefined) }),
    },
    commands: { registerCommand: (name) => ({ name, dispose() {} }) },
  },
  "vscode-languageclient/node": {
    TransportKind: { stdio: 0 },
    LanguageClient: class {
      constructor(id, name, serverOptions, clientOptions) {
        Object.assign(started, { id, serverOptions, clientOptions });
      }
      async start() {}
      async stop() {}
    },
  },
};
const load = Module._load;
Module._load = function (request, ...rest) {
  return request in stand_ins ? stand_ins[request] : load.call(this, request, ...rest);
};

const extension = require(path.join(__dirname, "..", "extension.js"));
const context = { subscriptions: [] };
extension.activate(context).then(() => {
  started.commands = context.subscriptions.map((s) => s.name);
  console.log(JSON.stringify(started));
});
