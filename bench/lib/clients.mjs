// Stock Yjs clients for the benchmark: y-websocket's WebsocketProvider (ours, @y/websocket-server,
// pycrdt-websocket) or @hocuspocus/provider (Hocuspocus). Each client counts the bytes it receives.
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { HocuspocusProvider } from '@hocuspocus/provider'

export const now = () => performance.timeOrigin + performance.now()

// A `ws` WebSocket that offers permessage-deflate (the `ws` default, as browsers do) and counts
// received payload bytes (after inflation) and wire bytes (TCP, including framing/compression).
export function countingSocketClass (counter) {
  return class CountingWebSocket extends WebSocket {
    constructor (url, protocols) {
      super(url, protocols, { perMessageDeflate: true })
      counter.sockets = (counter.sockets || 0) + 1
      this.on('message', (data) => {
        counter.payloadBytes += data.length ?? data.byteLength
        counter.messages += 1
      })
      this.on('open', () => {
        counter.deflate = typeof this.extensions === 'string' && this.extensions.includes('permessage-deflate')
      })
    }

    wireBytesRead () {
      return this._socket ? this._socket.bytesRead : 0
    }
  }
}

export function newCounter () {
  return { payloadBytes: 0, messages: 0, deflate: false, sockets: 0 }
}

// One client: { doc, text, synced (promise), isSynced(), destroy(), counter, serverIndex }.
export function connect (target, docName, serverIndex, opts = {}) {
  const doc = new Y.Doc()
  const counter = newCounter()
  const WS = countingSocketClass(counter)
  const url = target.urls[serverIndex % target.urls.length]
  let provider
  let syncedFlag = false
  let resolveSynced
  const synced = new Promise((resolve) => { resolveSynced = resolve })
  const markSynced = () => {
    if (!syncedFlag) {
      syncedFlag = true
      resolveSynced(now())
    }
  }
  if (target.protocol === 'hocuspocus') {
    provider = new HocuspocusProvider({
      url,
      name: docName,
      document: doc,
      token: target.params?.token ?? null,
      WebSocketPolyfill: WS,
      onSynced: () => markSynced()
    })
  } else {
    provider = new WebsocketProvider(url, docName, doc, {
      WebSocketPolyfill: WS,
      disableBc: true,
      params: target.params || {},
      resyncInterval: -1
    })
    provider.on('sync', (state) => { if (state) markSynced() })
  }
  const stats = { closes: 0, closeCodes: [] }
  const onClose = (event) => {
    stats.closes += 1
    const code = event?.code ?? event?.event?.code
    if (code !== undefined) stats.closeCodes.push(code)
  }
  if (target.protocol === 'hocuspocus') {
    provider.on('close', onClose)
  } else {
    provider.on('connection-close', onClose)
  }
  return {
    doc,
    text: doc.getText('content'),
    provider,
    counter,
    stats,
    serverIndex,
    synced,
    isSynced: () => syncedFlag,
    wireBytes: () => {
      const ws = target.protocol === 'hocuspocus'
        ? provider.configuration?.websocketProvider?.webSocket
        : provider.ws
      return ws && ws.wireBytesRead ? ws.wireBytesRead() : 0
    },
    destroy: () => {
      provider.destroy()
      doc.destroy()
    },
    ...opts
  }
}
