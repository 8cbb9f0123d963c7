// The Run button: POST an execution of the active file (202 at once), then show its output
// from the execution.* events on the project channel. Every window of the project follows
// the newest run, so a collaborator sees the output too.
import { api } from './api.js'

const KEEP = 20

export class RunPanel {
  constructor ({ output, status, projectId, onError }) {
    this.output = output
    this.status = status
    this.projectId = projectId
    this.onError = onError || (() => {})
    this.current = null
    this.awaiting = false
    this.runs = new Map() // execution id -> {chunks, finished}
  }

  async run (file) {
    if (!file) {
      this.status.textContent = 'open a file to run it'
      return
    }
    this.awaiting = true
    this.output.textContent = ''
    this.status.textContent = 'starting…'
    try {
      const execution = await api.execute(this.projectId, { file_id: file.id })
      this.show(execution.id)
      if (execution.finished) this.finish(execution.id, execution)
    } catch (err) {
      this.status.textContent = `not started: ${err.message}`
      throw err
    } finally {
      this.awaiting = false
    }
  }

  entry (id) {
    let run = this.runs.get(id)
    if (!run) {
      run = { chunks: [], finished: null }
      this.runs.set(id, run)
      while (this.runs.size > KEEP) this.runs.delete(this.runs.keys().next().value)
    }
    return run
  }

  /** An execution.* event from the project channel. */
  event (msg) {
    const id = msg.execution_id
    if (!id) return
    const run = this.entry(id)
    if (msg.type === 'execution.started' && !this.awaiting) this.show(id)
    if (msg.type === 'execution.output') run.chunks.push(msg.data || '')
    if (msg.type === 'execution.finished') run.finished = msg.execution || {}
    if (id === this.current) this.render()
  }

  finish (id, execution) {
    this.entry(id).finished = execution
    if (id === this.current) this.render()
  }

  show (id) {
    this.current = id
    this.output.dataset.executionId = id
    this.entry(id)
    this.render()
  }

  render () {
    const run = this.runs.get(this.current)
    if (!run) return
    const done = run.finished
    let text = run.chunks.join('')
    if (done && !text) text = (done.compile_output || '') + (done.stdout || '') + (done.stderr || '')
    if (done && done.message && !text.includes(done.message)) text += `\n[${done.message}]`
    this.output.textContent = text
    this.output.scrollTop = this.output.scrollHeight
    if (!done) {
      this.status.textContent = 'running…'
      return
    }
    const parts = [done.status_description || done.status || 'finished']
    if (done.exit_code !== undefined && done.exit_code !== null) parts.push(`exit ${done.exit_code}`)
    if (done.wall_time_ms !== undefined && done.wall_time_ms !== null) parts.push(`${Math.round(done.wall_time_ms)} ms`)
    this.status.textContent = parts.join(' · ')
    this.output.dataset.status = done.status || 'finished'
  }
}
