// A JSON WebSocket that reconnects with backoff and jitter, refreshing the token on 4401.
import { refresh, socketUrl } from './api.js'

const GIVE_UP = new Set([4404])
// A 4403 is retried a few times: access can come back (re-invited), and a server re-checking
// roles may close a socket that joined during the check. A real refusal repeats at connect.
const FORBIDDEN_RETRIES = 3

export class JsonSocket {
  constructor (path, { onMessage, onOpen, onStatus } = {}) {
    this.path = path
    this.onMessage = onMessage || (() => {})
    this.onOpen = onOpen || (() => {})
    this.onStatus = onStatus || (() => {})
    this.queue = []
    this.closed = false
    this.attempt = 0
    this.forbidden = 0
    this.timer = null
    this.connect()
  }

  connect () {
    if (this.closed) return
    const ws = new WebSocket(socketUrl(this.path))
    this.ws = ws
    this.onStatus('connecting')
    ws.onopen = () => {
      this.attempt = 0
      this.onStatus('open')
      this.onOpen()
      for (const message of this.queue.splice(0)) ws.send(message)
    }
    ws.onmessage = (event) => {
      let message
      try {
        message = JSON.parse(event.data)
      } catch {
        return
      }
      this.forbidden = 0
      this.onMessage(message)
    }
    ws.onclose = async (event) => {
      if (this.ws !== ws) return
      console.info(`socket ${this.path} closed: ${event.code} ${event.reason}`)
      this.onStatus(`closed ${event.code}`)
      if (this.closed || GIVE_UP.has(event.code)) return
      if (event.code === 4403 && ++this.forbidden > FORBIDDEN_RETRIES) return
      if (event.code === 4401 && !(await refresh())) return
      const delay = Math.min(10000, 250 * 2 ** this.attempt++) * (0.5 + Math.random())
      this.timer = setTimeout(() => this.connect(), delay)
    }
  }

  send (message) {
    const data = JSON.stringify(message)
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(data)
    else this.queue.push(data)
  }

  close () {
    this.closed = true
    clearTimeout(this.timer)
    if (this.ws) this.ws.close(1000)
  }
}
