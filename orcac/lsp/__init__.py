"""`orcac lsp`: a language server for .orca files over stdio (pygls).

Every answer comes from the compiler itself, never a second reading of the language:

    analysis.py     one compiler run over an editor's buffers (load, resolve, check), kept
    locate.py       the syntax node under the cursor
    diagnostics.py  the compiler's diagnostics as LSP diagnostics, per file
    hover.py        a declaration's text, a task's resolved settings
    definition.py   where a name or an import is declared, across files and the stdlib
    completion.py   keys and block kinds from to_spec's tables; declared names
    server.py       the pygls server: documents in, the features above out

Only `orcac lsp` imports this package (and pygls), so `orcac check` pays nothing for it.
"""
