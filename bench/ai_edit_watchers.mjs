// W stock y-websocket clients watching one document while the assistant edits it.
//   node ai_edit_watchers.mjs WS_URL FILE_ID TOKEN W
// Prints "ready" once every client is synced, then, on "go\n" from stdin, records each
// client's text changes (wall-clock ms, performance.timeOrigin + now) until stdin says
// "stop\n"; prints one JSON line: per client the time and size of every insertion.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'

const [url, room, token, count] = process.argv.slice(2)
const now = () => performance.timeOrigin + performance.now()
const clients = []
for (let i = 0; i < Number(count); i++) {
  const doc = new Y.Doc()
  const text = doc.getText('content')
  const provider = new WebsocketProvider(url, room, doc, { params: { token }, WebSocketPolyfill: WebSocket, disableBc: true })
  const client = { doc, text, provider, changes: [], synced: false, recording: false }
  provider.on('sync', (synced) => { client.synced = client.synced || synced })
  // Only insertions count: the edit's first change removes the range.
  text.observe((event) => {
    if (!client.recording) return
    const inserted = event.delta.reduce((n, op) => n + (typeof op.insert === 'string' ? op.insert.length : 0), 0)
    if (inserted) client.changes.push([now(), inserted])
  })
  clients.push(client)
}
const waitSynced = async () => {
  const deadline = Date.now() + 30000
  while (!clients.every((c) => c.synced)) {
    if (Date.now() > deadline) throw new Error('clients did not sync')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
await waitSynced()
process.stdout.write('ready\n')
const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  if (line === 'go') {
    for (const c of clients) { c.changes = []; c.recording = true }
    process.stdout.write('going\n')
  } else if (line === 'stop') {
    for (const c of clients) c.recording = false
    process.stdout.write(JSON.stringify(clients.map((c) => ({ changes: c.changes, length: c.text.length }))) + '\n')
  } else if (line === 'exit') {
    for (const c of clients) c.provider.destroy()
    setTimeout(() => process.exit(0), 50)
  }
})
