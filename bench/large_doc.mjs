// Issue 21's large document: build a 20 MB Y.Text with a long edit history once, load it into a
// target through the y-websocket protocol, then time fresh stock clients joining it.
//
//   node large_doc.mjs build OUT.bin LINES EDITS      (the document's updates, batched, to a file)
//   node large_doc.mjs run SPEC.json                  (SPEC: target, doc, updates, joins...)
//
// `run` prints JSON lines; large_doc.py samples the server's CPU and RSS at each "mark" event
// (it answers on stdin, so a sample belongs to exactly one phase), the last line is the result.
import fs from 'node:fs'
import readline from 'node:readline'
import * as Y from 'yjs'
import { connect, now } from './lib/clients.mjs'

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function rng (seed) {
  let t = seed >>> 0
  return () => {
    t += 0x6D2B79F5
    let x = t
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const WORDS = ('const let return function import export class async await if else for while ' +
  'value result index item count total buffer stream socket server client document update ' +
  'state vector merge apply encode decode text line edit cursor offset length width height').split(' ')

// LINES lines of ~190 characters appended in transactions of 200 lines, then EDITS small edits
// (typing, deletions, replaced words) at random places by 8 rotating authors: the item structure
// and delete set of a long-edited file. Updates are merged into batches of ~1 MB (the server's
// message limit is 8 MB) and written as [u32 length][bytes]...
function build (out, lines, edits) {
  const doc = new Y.Doc()
  const text = doc.getText('content')
  const rand = rng(21)
  const updates = []
  doc.on('update', (u) => updates.push(u))
  const line = () => {
    let s = ''
    while (s.length < 180) s += WORDS[Math.floor(rand() * WORDS.length)] + ' '
    return s + '\n'
  }
  let author = 0
  const rotate = () => { doc.clientID = 1000 + (author++ % 8) }
  for (let i = 0; i < lines; i += 200) {
    rotate()
    doc.transact(() => {
      let chunk = ''
      for (let j = i; j < Math.min(lines, i + 200); j++) chunk += line()
      text.insert(text.length, chunk)
    })
  }
  for (let i = 0; i < edits; i++) {
    if (i % 500 === 0) rotate()
    const at = Math.floor(rand() * (text.length - 20))
    const r = rand()
    if (r < 0.4) text.insert(at, WORDS[Math.floor(rand() * WORDS.length)] + ' ')
    else if (r < 0.7) text.delete(at, 1 + Math.floor(rand() * 8))
    else doc.transact(() => { text.delete(at, 5); text.insert(at, WORDS[Math.floor(rand() * WORDS.length)]) })
  }
  const batches = []
  let pending = []
  let size = 0
  for (const u of updates) {
    pending.push(u)
    size += u.length
    if (size >= 1 << 20) {
      batches.push(Y.mergeUpdates(pending))
      pending = []
      size = 0
    }
  }
  if (pending.length) batches.push(Y.mergeUpdates(pending))
  const fd = fs.openSync(out, 'w')
  for (const b of batches) {
    const head = Buffer.alloc(4)
    head.writeUInt32LE(b.length)
    fs.writeSync(fd, head)
    fs.writeSync(fd, b)
  }
  fs.closeSync(fd)
  const state = Y.encodeStateAsUpdate(doc)
  emit({
    event: 'built',
    text_chars: text.length,
    lines: text.toString().split('\n').length,
    transactions: updates.length,
    batches: batches.length,
    batch_bytes: batches.reduce((a, b) => a + b.length, 0),
    state_bytes: state.length
  })
}

function readBatches (path) {
  const buf = fs.readFileSync(path)
  const out = []
  for (let pos = 0; pos < buf.length;) {
    const n = buf.readUInt32LE(pos)
    out.push(buf.subarray(pos + 4, pos + 4 + n))
    pos += 4 + n
  }
  return out
}

const lines = readline.createInterface({ input: process.stdin })
const answers = lines[Symbol.asyncIterator]()
// A sample point: the orchestrator reads the server's CPU/RSS, then answers.
async function mark (name, extra = {}) {
  emit({ event: 'mark', name, ...extra })
  await answers.next()
}

async function withDeadline (promise, ms) {
  let timer
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), ms) })
  const value = await Promise.race([promise, timeout])
  clearTimeout(timer)
  return value
}

async function join (target, docName, expectedLength) {
  const start = now()
  const client = connect(target, docName, 0)
  const t = await withDeadline(client.synced, 60000)
  const ok = t !== 'timeout' && client.text.length === expectedLength
  const run = {
    ms: t === 'timeout' ? null : t - start,
    ok,
    payload_bytes: client.counter.payloadBytes,
    wire_bytes: client.wireBytes(),
    deflate: client.counter.deflate
  }
  client.destroy()
  return run
}

async function run (specPath) {
  const spec = JSON.parse(fs.readFileSync(specPath, 'utf8'))
  const { target, doc: docName } = spec
  const batches = readBatches(spec.updates)
  const local = new Y.Doc()
  for (const b of batches) Y.applyUpdate(local, b)
  const expectedLength = local.getText('content').length
  // The client's own floor: applying the whole state to a fresh Y.Doc here, no network.
  const state = Y.encodeStateAsUpdate(local)
  local.destroy()
  const floors = []
  for (let i = 0; i < 2; i++) {
    const start = now()
    const fresh = new Y.Doc()
    Y.applyUpdate(fresh, state)
    floors.push(now() - start)
    fresh.destroy()
  }
  await mark('before_load')
  // Load: one writer applies the batches (each becomes one update message).
  const writer = connect(target, docName, 0)
  if (await withDeadline(writer.synced, 10000) === 'timeout') {
    emit({ event: 'result', error: 'writer did not sync' })
    return
  }
  const t0 = now()
  // The socket of the moment (the provider reconnects after a close); yielding after each
  // batch lets ws answer the server's keepalive pings.
  const buffered = () => writer.provider.ws ? writer.provider.ws.bufferedAmount : 0
  for (const b of batches) {
    Y.applyUpdate(writer.doc, b)
    await sleep(0)
    while (buffered() > (4 << 20)) await sleep(5)
  }
  for (let waited = 0; buffered() > 0 && waited < 120000; waited += 5) await sleep(5)
  emit({ event: 'progress', phase: 'sent', ms: now() - t0, closes: writer.stats.closeCodes })
  // Loaded when a fresh client gets the whole text (this first join is not timed).
  let loadedAt = null
  for (let i = 0; i < 20 && loadedAt === null; i++) {
    const probe = await join(target, docName, expectedLength)
    if (probe.ok) loadedAt = now()
    else await sleep(1000)
  }
  writer.destroy()
  if (loadedAt === null) {
    emit({ event: 'result', error: 'document not loaded' })
    return
  }
  emit({ event: 'progress', phase: 'loaded', ms: loadedAt - t0 })
  await sleep(spec.settleMs)
  await mark('before_joins')
  const sequential = []
  for (let i = 0; i < spec.joins; i++) {
    sequential.push(await join(target, docName, expectedLength))
    emit({ event: 'progress', phase: 'join', run: sequential[sequential.length - 1] })
    await sleep(200)
  }
  await mark('after_sequential', { joins: spec.joins })
  const together = await Promise.all(
    Array.from({ length: spec.together }, () => join(target, docName, expectedLength)))
  await mark('after_together', { joins: spec.together })
  await sleep(spec.settleMs)
  await mark('settled')
  emit({
    event: 'result',
    load_ms: loadedAt - t0,
    text_chars: expectedLength,
    client_floor_ms: Math.min(...floors),
    sequential,
    together
  })
}

const [mode, ...args] = process.argv.slice(2)
try {
  if (mode === 'build') build(args[0], Number(args[1]), Number(args[2]))
  else await run(args[0])
} catch (err) {
  emit({ event: 'result', error: String(err && err.stack ? err.stack : err) })
}
process.exit(0)
