// The shipped declarations (dist/**/*.d.ts, built by `npm run build:ts`) describe the public API
// and nothing else: no internal helpers (`settle`, binding handles, validators), no bare `object`
// where a descriptor-like is meant, no symbol-keyed slots, no constructor taking an internal token.
import test from 'ava'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const dist = fileURLToPath(new URL('../dist', import.meta.url))
const declarations = [join(dist, 'index.d.ts'), ...readdirSync(join(dist, 'lib')).filter((f) => f.endsWith('.d.ts')).map((f) => join(dist, 'lib', f))]
  .map((path) => ({ path, text: readFileSync(path, 'utf8').replace(/\/\*\*[\s\S]*?\*\//g, '') })) // doc comments left out

const INTERNALS = [
  'settle',
  'messageFrom',
  'receivedFdOf',
  'adoptionSource',
  'openSocket',
  'validateSocketOptions',
  'collectedWhileOpen',
  'listenNow',
  'descriptorOf',
  'checkOptionNames',
  'SendQueue',
  'ReceivedFdsHandle',
  'SocketHandle',
]

for (const { path, text } of declarations) {
  const name = path.slice(dist.length + 1)
  test(`${name} declares no internals`, (t) => {
    for (const internal of INTERNALS) t.false(new RegExp(`\\b${internal}\\b`).test(text), `${name} mentions ${internal}`)
    t.false(/export declare let\b/.test(text), 'no assignable exports (internal hooks)')
    t.false(/[:|<(,]\s*object\b/.test(text), 'no bare object type')
    t.false(/unique symbol|\[\w+: symbol\]/.test(text), 'no symbol-keyed slots')
    const constructors = text.match(/constructor\([^)]*\)/g) ?? []
    for (const constructor of constructors) t.false(/token|internal|opening|slot/i.test(constructor), `${name}: ${constructor}`)
  })
}
