#!/usr/bin/env node
// Every export of the package has a one-line example: checks that each name the shipped
// declarations (dist/index.d.ts) export carries an @example tag in its doc comment, the comment
// `npm run docs` turns into the API reference. Lists those that do not and exits non-zero.
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import ts from 'typescript'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const entry = join(root, 'dist', 'index.d.ts')
const program = ts.createProgram([entry], { noEmit: true, types: ['node'] })
const checker = program.getTypeChecker()
const source = program.getSourceFile(entry)
if (!source) {
  console.error(`${entry} is missing: run npm run build`)
  process.exit(1)
}

const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(source))
const missing = []
for (const exported of exports) {
  const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported
  const hasExample = (symbol.declarations ?? []).some((declaration) =>
    ts.getJSDocTags(declaration).some((tag) => tag.tagName.text === 'example'),
  )
  if (!hasExample) missing.push(exported.name)
}
if (missing.length > 0) {
  console.log(`exports without an @example: ${missing.join(', ')}`)
  process.exit(1)
}
console.log(`every one of the ${exports.length} exports has an @example`)
