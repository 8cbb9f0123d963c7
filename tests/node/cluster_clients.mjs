// Many stock y-websocket clients in one Node process, driven by pytest over stdin/stdout.
//
// Input: one JSON command per line, each with "re" (echoed in the answer).
//   {"cmd":"open","id","url","room","token"}   connect a client (resolves when synced)
//   {"cmd":"storm","ids":[...],"edits":N,"interval_ms":M}  every client types N unique
//        markers "[id:k]" at the start or the end of its text (markers are never split),
//        answers when all typed (connected or not: offline edits stay in the client)
//   {"cmd":"type","id","text"}                 insert text at the end
//   {"cmd":"texts"}                            {id: text} of every client
//   {"cmd":"status"}                           {id: {connected, synced, url}}
//   {"cmd":"awareness","id","state"}           set the client's local awareness state
//   {"cmd":"peers","id"}                       awareness states the client sees {clientID: state}
//   {"cmd":"url","id","url"}                   reconnect the client to another server
//   {"cmd":"close","id"} / {"cmd":"exit"}
// Output: {"re", "ok": true, ...} per command; {"event":"status"|"close",...} as they happen.
import * as readline from 'node:readline'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

const clients = new Map()

function out (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function open ({ id, url, room, token }) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(url, room, doc, {
    WebSocketPolyfill: WebSocket,
    params: { token },
    disableBc: true,
    maxBackoffTime: 500
  })
  const client = { id, doc, provider, text: doc.getText('content'), closes: [] }
  provider.on('status', ({ status }) => out({ event: 'status', id, status }))
  provider.on('connection-close', (ev) => {
    client.closes.push(ev ? ev.code : null)
    out({ event: 'close', id, code: ev ? ev.code : null })
  })
  clients.set(id, client)
  return new Promise((resolve) => {
    if (provider.synced) return resolve()
    const onSync = (synced) => {
      if (synced) {
        provider.off('sync', onSync)
        resolve()
      }
    }
    provider.on('sync', onSync)
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function storm ({ ids, edits, interval_ms: interval }) {
  await Promise.all(ids.map(async (id) => {
    const c = clients.get(id)
    for (let k = 0; k < edits; k++) {
      const marker = `[${id}:${k}]`
      if (Math.random() < 0.5) c.text.insert(0, marker)
      else c.text.insert(c.text.length, marker)
      await sleep(interval * (0.5 + Math.random()))
    }
  }))
}

async function handle (msg) {
  const c = msg.id !== undefined ? clients.get(msg.id) : undefined
  switch (msg.cmd) {
    case 'open':
      await open(msg)
      return {}
    case 'storm':
      await storm(msg)
      return {}
    case 'type':
      c.text.insert(c.text.length, msg.text)
      return {}
    case 'texts':
      return { texts: Object.fromEntries([...clients].map(([id, cl]) => [id, cl.text.toString()])) }
    case 'status':
      return {
        status: Object.fromEntries([...clients].map(([id, cl]) => [id, {
          connected: cl.provider.wsconnected,
          synced: cl.provider.synced,
          url: cl.provider.serverUrl,
          closes: cl.closes
        }]))
      }
    case 'awareness':
      c.provider.awareness.setLocalState(msg.state)
      return {}
    case 'peers':
      return { states: Object.fromEntries(c.provider.awareness.getStates()) }
    case 'url':
      c.provider.disconnect()
      c.provider.serverUrl = msg.url
      c.provider.connect()
      return {}
    case 'close':
      c.provider.destroy()
      clients.delete(msg.id)
      return {}
    case 'exit':
      for (const cl of clients.values()) cl.provider.destroy()
      setTimeout(() => process.exit(0), 10)
      return {}
    default:
      throw new Error('unknown command ' + msg.cmd)
  }
}

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    out({ ok: false, error: 'bad json' })
    return
  }
  handle(msg).then(
    (res) => out({ re: msg.re, ok: true, ...res }),
    (err) => out({ re: msg.re, ok: false, error: String(err && err.stack ? err.stack : err) })
  )
})
rl.on('close', () => process.exit(0))
