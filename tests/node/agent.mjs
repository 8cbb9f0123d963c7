// A stock Yjs client (yjs + y-websocket + ws) driven line by line from pytest.
// stdin: one JSON command per line; stdout: one JSON reply per command, plus
// {"event": ...} lines for closes and awareness changes.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'
import { createHash } from 'node:crypto'

const [url, room, token] = process.argv.slice(2)
const doc = new Y.Doc()
const text = doc.getText('content')
const provider = new WebsocketProvider(url, room, doc, {
  params: { token },
  WebSocketPolyfill: WebSocket,
  disableBc: true,
  connect: true
})
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const closes = []
provider.on('connection-close', (event) => {
  if (event) { closes.push(event.code); out({ event: 'close', code: event.code }) }
})
provider.on('sync', (synced) => { if (synced) out({ event: 'synced' }) })
// Every (re)connection; a close the client decides itself (no message for 30 s) has no
// close event, but the reconnection after it shows here.
provider.on('status', ({ status }) => { out({ event: 'status', status }) })
// Every client id whose state this client saw removed, in order (a cursor vanishing).
const removedStates = []
provider.awareness.on('change', ({ removed }) => { removedStates.push(...removed) })

const handlers = {
  text: () => text.toString(),
  synced: () => provider.synced,
  closes: () => closes,
  client_id: () => doc.clientID,
  // The extensions the server agreed to (permessage-deflate for large messages).
  extensions: () => provider.ws ? provider.ws.extensions : null,
  // A large text's digest (the text itself would not fit one reply line).
  sha256: () => createHash('sha256').update(text.toString()).digest('hex'),
  insert: ({ index, value }) => { text.insert(Math.min(index, text.length), value); return text.toString() },
  // Insert at a fraction of the way between two markers of the text as it is now.
  insert_between: ({ lo, hi, at, value }) => {
    const s = text.toString()
    const start = lo ? s.indexOf(lo) + lo.length : 0
    const end = hi ? s.indexOf(hi) : s.length
    if ((lo && start < lo.length) || end < 0) throw new Error(`markers gone: ${s}`)
    const index = start + Math.floor(at * Math.max(0, end - start))
    text.insert(index, value)
    return index
  },
  delete: ({ index, length }) => { text.delete(index, length); return text.toString() },
  append: ({ value }) => { text.insert(text.length, value); return text.length },
  disconnect: () => { provider.shouldConnect = false; provider.disconnect(); return true },
  connect: () => { provider.connect(); return true },
  set_awareness: ({ state }) => { provider.awareness.setLocalState(state); return true },
  awareness_removed: () => removedStates,
  // Where a peer's awareness cursor points, resolved by Yjs from its relative position.
  cursor_of: ({ client }) => {
    const state = provider.awareness.getStates().get(client)
    if (!state || !state.cursor) return null
    const pos = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(state.cursor.head), doc)
    return pos ? pos.index : null
  },
  awareness: () => Object.fromEntries([...provider.awareness.getStates().entries()].filter(([id]) => id !== doc.clientID)),
  exit: () => { provider.destroy(); setTimeout(() => process.exit(0), 50); return true }
}

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const cmd = JSON.parse(line)
  try {
    out({ id: cmd.id, result: handlers[cmd.op](cmd) })
  } catch (err) {
    out({ id: cmd.id, error: String(err) })
  }
})
rl.on('close', () => { provider.destroy(); process.exit(0) })
