// A shared terminal: xterm.js on /ws/projects/{id}/terminals/{name} in terminado framing
// (["stdin", s] and ["set_size", rows, cols] out; ["setup", {}], ["stdout", s], ["disconnect", code] in).
import { Terminal } from '@xterm/xterm'
import { FitAddon } from '@xterm/addon-fit'
import { refresh, socketUrl } from './api.js'

export class TerminalPanel {
  constructor ({ root, projectId, name = 'main', onStatus }) {
    this.root = root
    this.path = `/ws/projects/${encodeURIComponent(projectId)}/terminals/${encodeURIComponent(name)}`
    this.onStatus = onStatus || (() => {})
    this.term = new Terminal({ convertEol: false, fontSize: 13, cursorBlink: true, scrollback: 2000 })
    this.fit = new FitAddon()
    this.term.loadAddon(this.fit)
    this.term.open(root)
    this.closed = false
    this.attempt = 0
    this.forbidden = 0
    this.term.onData((data) => this.send(['stdin', data]))
    this.term.onResize(({ rows, cols }) => this.send(['set_size', rows, cols]))
    this.resizeObserver = new ResizeObserver(() => this.resize())
    this.resizeObserver.observe(root)
    this.connect()
  }

  resize () {
    try {
      this.fit.fit()
    } catch {
      // not laid out yet
    }
  }

  connect () {
    const ws = new WebSocket(socketUrl(this.path))
    this.ws = ws
    this.onStatus('connecting')
    ws.onopen = () => {
      this.attempt = 0
      this.onStatus('open')
      this.resize()
      this.send(['set_size', this.term.rows, this.term.cols])
    }
    ws.onmessage = (event) => {
      let message
      try {
        message = JSON.parse(event.data)
      } catch {
        return
      }
      if (!Array.isArray(message)) return
      this.forbidden = 0
      if (message[0] === 'stdout') this.term.write(message[1])
      else if (message[0] === 'disconnect') this.term.write(`\r\n[terminal exited ${message[1] ?? ''}]\r\n`)
    }
    ws.onclose = async (event) => {
      if (this.ws !== ws || this.closed) return
      this.onStatus(`closed ${event.code}`)
      // 4503: this server cannot run terminals (e.g. no bubblewrap); the reason says why.
      if (event.code === 4503) {
        this.term.write(`\r\n[terminals unavailable: ${event.reason}]\r\n`)
        return
      }
      if (event.code === 4404 || (event.code === 4403 && ++this.forbidden > 3)) return
      if (event.code === 4401 && !(await refresh())) return
      const delay = Math.min(10000, 500 * 2 ** this.attempt++) * (0.5 + Math.random())
      this.timer = setTimeout(() => this.connect(), delay)
    }
  }

  send (message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message))
  }

  /** What the terminal shows, for tests and copy-out. */
  text () {
    const buffer = this.term.buffer.active
    const lines = []
    for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true))
    return lines.join('\n')
  }

  close () {
    this.closed = true
    clearTimeout(this.timer)
    this.resizeObserver.disconnect()
    if (this.ws) this.ws.close(1000)
    this.term.dispose()
  }
}
