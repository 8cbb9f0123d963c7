// The Run button: POST an execution of the active file, show its output as
// execution.* events arrive on the project channel (or from the answer itself).
import { api } from './api.js'

const LANGUAGES = { py: 'python', js: 'javascript', mjs: 'javascript', ts: 'typescript', sh: 'bash', rb: 'ruby', go: 'go', c: 'c', cpp: 'cpp', java: 'java' }

export function languageOf (file) {
  if (file.language) return file.language
  const ext = (file.name.split('.').pop() || '').toLowerCase()
  return LANGUAGES[ext] || 'python'
}

export class RunPanel {
  constructor ({ output, status, projectId, onError }) {
    this.output = output
    this.status = status
    this.projectId = projectId
    this.onError = onError || (() => {})
    this.current = null
  }

  async run (file, code) {
    if (!file) {
      this.status.textContent = 'open a file to run it'
      return
    }
    this.output.textContent = ''
    this.status.textContent = 'starting…'
    const execution = await api.execute(this.projectId, { file_id: file.id, language: languageOf(file), code })
    this.current = execution && (execution.id || execution.execution_id)
    this.output.dataset.executionId = this.current || ''
    if (execution && (execution.stdout || execution.stderr || execution.output)) {
      this.output.textContent = (execution.stdout || execution.output || '') + (execution.stderr || '')
    }
    if (execution && execution.status) this.showStatus(execution)
  }

  /** An execution.* event from the project channel. */
  event (msg) {
    const id = msg.execution_id || (msg.execution && msg.execution.id)
    if (this.current && id && id !== this.current) return
    if (!this.current && id) {
      this.current = id
      this.output.dataset.executionId = id
      this.output.textContent = ''
    }
    if (msg.type === 'execution.started') this.status.textContent = 'running…'
    if (msg.type === 'execution.output') this.output.textContent += msg.data ?? msg.text ?? msg.output ?? ''
    if (msg.type === 'execution.finished') this.showStatus(msg.execution || msg)
  }

  showStatus (execution) {
    const parts = [execution.status || 'finished']
    if (execution.exit_code !== undefined && execution.exit_code !== null) parts.push(`exit ${execution.exit_code}`)
    if (execution.execution_time_ms !== undefined && execution.execution_time_ms !== null) parts.push(`${execution.execution_time_ms} ms`)
    this.status.textContent = parts.join(' · ')
    this.output.dataset.status = execution.status || 'finished'
  }
}
