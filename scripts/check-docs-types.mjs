#!/usr/bin/env node
// What users copy must compile and do what it says. This checks, as a user's project would see
// them (strict, noUncheckedIndexedAccess, the shipped declarations):
//   - every ts/js code block of the README,
//   - every @example of the shipped declarations (dist/**/*.d.ts), in one function each, with
//     the free names the one-liners use (sock, server, fd, ...) declared once below,
//   - the runnable examples in examples/ (checkJs),
//   - a CommonJS consumer without esModuleInterop (module: commonjs; TypeScript 5 reports a
//     default import of a node: module in the declarations as TS1192 there),
// with this repository's TypeScript, and with TypeScript 5 when it can be fetched from the npm
// registry into .cache/typescript5 (once; skipped with the reason when the registry is
// unreachable). Then it runs the README blocks marked runnable and checks their output.
//
// A README block is configured by an HTML comment on the line before its fence:
//   <!-- check {"file": "quick-start.cjs", "run": true, "output": "^hello", "runs": 2} -->
// `file` names it (its extension says ESM or CommonJS, TypeScript or JavaScript), `run` runs it
// (`.ts`/`.mts` through @oxc-node/core), `output` is a regular expression its stdout must match,
// `runs` how many times in a row it must succeed (a program that leaves a socket file behind fails
// its second run); {"skip": "reason"} leaves a block out.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

import ts from 'typescript'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
// Inside the package, so that `import 'sendmsg'` resolves to it by its own name, as in a user's project.
const work = join(root, '.cache', 'docs-check')
const failures = []

if (!existsSync(join(root, 'dist', 'index.d.ts'))) {
  console.error('dist/index.d.ts is missing: run npm run build')
  process.exit(1)
}
rmSync(work, { recursive: true, force: true })
mkdirSync(work, { recursive: true })

// README blocks ---------------------------------------------------------------------------------

function readmeBlocks() {
  const lines = readFileSync(join(root, 'README.md'), 'utf8').split('\n')
  const blocks = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\w*)\s*$/.exec(lines[i])
    if (!open) continue
    const [, indent, lang] = open
    let end = i + 1
    while (end < lines.length && lines[end].trim() !== '```') end++
    const previous = lines[i - 1]?.trim() ?? ''
    const config = /^<!-- check (\{.*\}) -->$/.exec(previous)
    const options = config ? JSON.parse(config[1]) : {}
    const code = lines.slice(i + 1, end).map((line) => line.slice(indent.length)).join('\n')
    if ((lang === 'ts' || lang === 'js') && !options.skip) {
      const extension = lang === 'ts' ? 'mts' : 'mjs'
      blocks.push({ line: i + 1, code, file: options.file ?? `readme-line-${i + 1}.${extension}`, ...options })
    }
    i = end
  }
  return blocks
}

// @examples of the shipped declarations ---------------------------------------------------------

/** Every export of the package, as one import statement (type-only exports with `type`). */
function importEverything() {
  const entry = join(root, 'dist', 'index.d.ts')
  const program = ts.createProgram([entry], { noEmit: true, types: ['node'] })
  const checker = program.getTypeChecker()
  const names = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(entry))).map((exported) => {
    const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported
    return symbol.flags & ts.SymbolFlags.Value ? exported.name : `type ${exported.name}`
  })
  return `import { ${names.join(', ')} } from 'sendmsg'`
}

/** The free names the one-line examples use, each declared once with the type it stands for. */
const EXAMPLE_PRELUDE = `
import * as dgram from 'node:dgram'
import * as http from 'node:http'
import * as net from 'node:net'
${importEverything()}
declare const sock: UnixSocket
declare const server: net.Server
declare const listener: net.Server
declare const tcpSocket: net.Socket
declare const udpSocket: dgram.Socket
declare const channel: FrameChannel
declare const msg: Message
declare const message: Message
declare const fd: number
declare const fds: number[]
declare const data: Buffer
declare const type: number
declare const socketType: number
declare const path: string
declare const node: string
declare const app: http.Server
declare const listeners: ReceivedListeners<'http' | 'dns'>
declare const error: unknown
declare function handler(request: http.IncomingMessage, response: http.ServerResponse): void
declare function handle(data: Buffer, fds: readonly ReceivedFd[]): void
declare function serve(socket: UnixSocket): void
declare function reconnect(): void
declare function stop(peer: Credentials): void
declare function log(text: string): void
`

function exampleText(tag) {
  const { comment } = tag
  if (typeof comment === 'string') return comment
  return (comment ?? []).map((part) => part.text).join('')
}

function declarationExamples() {
  const dist = join(root, 'dist')
  const files = [join(dist, 'index.d.ts'), ...readdirSync(join(dist, 'lib')).filter((f) => f.endsWith('.d.ts')).map((f) => join(dist, 'lib', f))]
  const examples = []
  for (const file of files) {
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)
    const visit = (node) => {
      for (const tag of ts.getJSDocTags(node)) {
        if (tag.tagName.text !== 'example' || tag.parent?.parent !== node) continue
        const { line } = source.getLineAndCharacterOfPosition(tag.getStart())
        examples.push({ where: `${relative(root, file)}:${line + 1}`, code: exampleText(tag).trim() })
      }
      ts.forEachChild(node, visit)
    }
    visit(source)
  }
  // One tag can be reached from several nodes of one declaration: keep each once.
  const seen = new Set()
  return examples.filter(({ where }) => !seen.has(where) && seen.add(where))
}

// Writing and compiling ------------------------------------------------------------------------

const blocks = readmeBlocks()
for (const block of blocks) writeFileSync(join(work, block.file), `${block.code}\n`)

const examples = declarationExamples()
const exampleLines = [EXAMPLE_PRELUDE]
for (const [index, example] of examples.entries()) {
  exampleLines.push(`// ${example.where}`, `export async function example${index}(): Promise<void> {`, example.code, '}')
}
const exampleSource = exampleLines.join('\n')
writeFileSync(join(work, 'examples.mts'), exampleSource)

const compilerOptions = {
  strict: true,
  noUncheckedIndexedAccess: true,
  target: 'ES2022',
  lib: ['ES2023', 'ESNext.Disposable'],
  module: 'nodenext',
  moduleResolution: 'nodenext',
  types: ['node'],
  allowJs: true,
  checkJs: true,
  noEmit: true,
  skipLibCheck: true,
}
// The examples that use the package (not the demo's load generator and driver).
const exampleFiles = readdirSync(join(root, 'examples')).filter(
  (f) => /\.[mc]?js$/.test(f) && /from 'sendmsg'|require\('sendmsg'\)/.test(readFileSync(join(root, 'examples', f), 'utf8')),
)
writeFileSync(join(work, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: [...blocks.map((b) => b.file), 'examples.mts'] }, null, 2))
// The example programs are plain JavaScript, where a parameter cannot be typed without a JSDoc
// annotation: they are checked as strictly, except for implicit `any` parameters.
const programs = join(work, 'programs')
mkdirSync(programs)
writeFileSync(
  join(programs, 'tsconfig.json'),
  JSON.stringify({ compilerOptions: { ...compilerOptions, noImplicitAny: false }, files: exampleFiles.map((f) => join('..', '..', '..', 'examples', f)) }, null, 2),
)

// A CommonJS consumer of an older setup: no esModuleInterop, node10 resolution through node_modules.
const consumer = join(work, 'cjs-consumer')
mkdirSync(join(consumer, 'node_modules'), { recursive: true })
symlinkSync(root, join(consumer, 'node_modules', 'sendmsg'), 'dir')
writeFileSync(
  join(consumer, 'consumer.ts'),
  `import { toNetServer, UnixSocket, workerListeners } from 'sendmsg'\n` +
    `export async function main(): Promise<void> {\n` +
    `  const { listeners } = await workerListeners({ expect: ['http'] })\n` +
    `  toNetServer(listeners.http).close()\n` +
    `  UnixSocket.pair('stream').forEach((socket) => socket.close())\n` +
    `}\n`,
)
function consumerConfig(major) {
  const options = { strict: true, module: 'commonjs', target: 'ES2022', lib: ['ES2023', 'ESNext.Disposable'], types: ['node'], noEmit: true, skipLibCheck: false }
  // TypeScript 6 deprecates node10 resolution (module: commonjs's default) and always allows default imports.
  if (major >= 6) options.ignoreDeprecations = '6.0'
  writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify({ compilerOptions: options, files: ['consumer.ts'] }, null, 2))
}

/** Maps a line of examples.mts back to the declaration its example came from. */
function explain(output) {
  return output.replace(/examples\.mts\((\d+),(\d+)\)/g, (whole, line) => {
    const sourceLines = exampleSource.split('\n')
    let owner
    for (const example of examples) {
      const start = sourceLines.indexOf(`// ${example.where}`) + 1
      if (start > 0 && start <= Number(line)) owner = example
    }
    return owner ? `${whole} [@example of ${owner.where}: ${owner.code.split('\n')[0]}]` : whole
  })
}

function typeCheck(label, tsc, major) {
  const run = (cwd) => spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd, encoding: 'utf8' })
  const docs = run(work)
  if (docs.status !== 0) failures.push(`${label}: README blocks and @examples do not type-check:\n${explain(docs.stdout + docs.stderr)}`)
  else console.log(`${label}: ${blocks.length} README blocks and ${examples.length} @examples type-check (strict, noUncheckedIndexedAccess)`)
  const checked = run(programs)
  if (checked.status !== 0) failures.push(`${label}: examples/ does not type-check:\n${checked.stdout}${checked.stderr}`)
  else console.log(`${label}: ${exampleFiles.join(', ')} type-check (checkJs, strict but for implicit any)`)
  consumerConfig(major)
  const cjs = run(consumer)
  if (cjs.status !== 0) failures.push(`${label}: a CommonJS consumer without esModuleInterop fails on the declarations:\n${cjs.stdout}${cjs.stderr}`)
  else console.log(`${label}: a CommonJS consumer without esModuleInterop compiles against the declarations`)
}

typeCheck(`TypeScript ${ts.version}`, join(root, 'node_modules', 'typescript', 'bin', 'tsc'), Number(ts.version.split('.')[0]))

// TypeScript 5, fetched once from the registry.
const ts5Dir = join(root, '.cache', 'typescript5')
const ts5 = join(ts5Dir, 'node_modules', 'typescript')
if (!existsSync(join(ts5, 'bin', 'tsc'))) {
  mkdirSync(ts5Dir, { recursive: true })
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  const fetched = spawnSync(
    npm,
    ['install', '--prefix', ts5Dir, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--fetch-timeout=20000', '--fetch-retries=1', 'typescript@5'],
    { encoding: 'utf8', timeout: 120_000 },
  )
  if (fetched.status !== 0) {
    // npm's first error line says why (ECONNREFUSED, ENOTFOUND, ...); its last one only where the log is.
    const why = (fetched.stderr ?? '').split('\n').find((line) => line.startsWith('npm error')) ?? fetched.error?.message ?? `exit ${fetched.status}`
    console.log(`TypeScript 5: skipped, it could not be fetched from the npm registry (${why.trim()})`)
  }
}
if (existsSync(join(ts5, 'bin', 'tsc'))) {
  const version = JSON.parse(readFileSync(join(ts5, 'package.json'), 'utf8')).version
  typeCheck(`TypeScript ${version}`, join(ts5, 'bin', 'tsc'), 5)
}

// Running the runnable README blocks ---------------------------------------------------------

for (const block of blocks.filter((b) => b.run)) {
  const args = /\.m?ts$/.test(block.file) ? ['--import', '@oxc-node/core/register', block.file] : [block.file]
  const runs = block.runs ?? 1
  for (let n = 1; n <= runs; n++) {
    const result = spawnSync(process.execPath, args, { cwd: work, encoding: 'utf8', timeout: 30_000 })
    const what = `README line ${block.line} (${block.file}), run ${n} of ${runs}`
    if (result.status !== 0) {
      failures.push(`${what} failed (${result.error?.message ?? `exit ${result.status}, signal ${result.signal}`}):\n${result.stdout}${result.stderr}`)
      break
    }
    if (block.output !== undefined && !new RegExp(block.output, 'm').test(result.stdout)) {
      failures.push(`${what} printed ${JSON.stringify(result.stdout)}, which does not match /${block.output}/m`)
      break
    }
    if (n === runs) console.log(`${what}: ran and printed what it says`)
  }
}

// The examples ship with the package and run from where npm puts them ---------------------------

const packed = spawnSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' })
if (packed.status !== 0) {
  failures.push(`npm pack --dry-run failed:\n${packed.stderr}`)
} else {
  const shipped = new Set(JSON.parse(packed.stdout)[0].files.map((file) => file.path))
  const named = new Set(readFileSync(join(root, 'README.md'), 'utf8').match(/examples\/[\w.-]+\.[mc]?js/g) ?? [])
  const missing = [...named].filter((path) => !shipped.has(path))
  if (missing.length > 0) failures.push(`the README names examples the package does not ship: ${missing.join(', ')}`)
  for (const file of readdirSync(join(root, 'examples'))) {
    if (!shipped.has(`examples/${file}`)) failures.push(`examples/${file} is not in the package`)
    const text = readFileSync(join(root, 'examples', file), 'utf8')
    if (/from '\.\.\/|require\('\.\.\//.test(text)) failures.push(`examples/${file} imports by a relative path outside examples/: it would not run from node_modules`)
  }
  if (failures.length === 0) console.log(`the package ships examples/ (${named.size} named in the README), none importing by a relative path`)
}
// As a user runs it: node node_modules/sendmsg/examples/pass-a-pipe.mjs, the package found by its
// name from node_modules (the links kept as they are, so that nothing resolves through the clone).
const app = join(work, 'app')
mkdirSync(join(app, 'node_modules'), { recursive: true })
symlinkSync(root, join(app, 'node_modules', 'sendmsg'), 'dir')
const installed = spawnSync(process.execPath, ['--preserve-symlinks', '--preserve-symlinks-main', 'node_modules/sendmsg/examples/pass-a-pipe.mjs'], {
  cwd: app,
  encoding: 'utf8',
  timeout: 30_000,
})
if (installed.status !== 0 || !/^parent \d+ read: hello from child \d+, writing through a descriptor it was handed$/m.test(installed.stdout)) {
  failures.push(`node node_modules/sendmsg/examples/pass-a-pipe.mjs failed (exit ${installed.status}):\n${installed.stdout}${installed.stderr}`)
} else {
  console.log('node node_modules/sendmsg/examples/pass-a-pipe.mjs runs and prints what it says')
}

if (failures.length > 0) {
  console.error(failures.join('\n\n'))
  process.exit(1)
}
console.log('every README block and @example type-checks; the runnable ones run')
