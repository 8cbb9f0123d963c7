// The live preview pane: deploy the project to its development preview, watch the build's
// logs, and show the app in a frame from the preview origin (never this page's origin, so
// the app cannot read this page's tokens). The frame is entered with a one-minute ticket
// that sets a cookie on the preview's own host; it is reloaded on preview.updated.
import { api } from './api.js'
import { h } from './dom.js'

const LOG_CHARS = 20000

export class PreviewPanel {
  constructor ({ root, projectId, onError }) {
    this.root = root
    this.projectId = projectId
    this.onError = onError || (() => {})
    this.deploymentId = null
    this.status = h('span', { class: 'muted', 'data-testid': 'preview-status' }, 'Not deployed yet.')
    this.link = h('a', { target: '_blank', rel: 'noopener', hidden: true, 'data-testid': 'preview-link' }, 'Open ↗')
    this.logs = h('pre', { class: 'preview-logs', 'data-testid': 'preview-logs', hidden: true })
    this.frame = h('iframe', {
      class: 'preview-frame',
      'data-testid': 'preview-frame',
      title: 'Preview',
      // The app gets its own origin already; the sandbox attribute would break most apps.
      referrerpolicy: 'no-referrer'
    })
    this.frame.hidden = true
    const deploy = h('button', {
      class: 'primary writer-only',
      'data-testid': 'preview-deploy',
      onclick: () => this.deploy().catch(this.onError)
    }, 'Deploy preview')
    root.replaceChildren(h('div', { class: 'row' }, [deploy, this.link]), this.status, this.logs, this.frame)
  }

  async show () {
    if (this.frame.hidden) await this.loadLatest()
  }

  async loadLatest () {
    const page = await api.deployments(this.projectId, 'development')
    const latest = (page.items || [])[0]
    if (!latest) return
    this.deploymentId = latest.id
    this.setStatus(latest.status, latest.error)
    if (latest.status === 'success') await this.reload()
  }

  async deploy () {
    this.logs.textContent = ''
    this.logs.hidden = false
    const row = await api.deploy(this.projectId, { environment: 'development' })
    this.deploymentId = row.id
    this.setStatus(row.status)
  }

  setStatus (status, error) {
    this.root.dataset.status = status
    this.status.textContent = error ? `${status}: ${error}` : status
  }

  async reload () {
    const session = await api.previewSession(this.projectId, { environment: 'development' })
    this.link.href = session.preview_url
    this.link.hidden = false
    this.frame.hidden = false
    this.frame.src = session.url
  }

  /** deployment.* and preview.* events of the project channel. */
  event (msg) {
    if (msg.environment && msg.environment !== 'development') return
    if (msg.type === 'deployment.status') {
      if (msg.status === 'pending' || msg.deployment_id === this.deploymentId || !this.deploymentId) {
        this.deploymentId = msg.deployment_id
        this.setStatus(msg.status, msg.error)
        if (msg.status === 'success') this.reload().catch(this.onError)
      }
    } else if (msg.type === 'deployment.log' && msg.deployment_id === this.deploymentId) {
      this.logs.hidden = false
      this.logs.textContent = (this.logs.textContent + msg.text).slice(-LOG_CHARS)
      this.logs.scrollTop = this.logs.scrollHeight
    } else if (msg.type === 'preview.updated') {
      this.root.dataset.version = String(msg.version)
      this.reload().catch(this.onError)
    } else if (msg.type === 'preview.failed') {
      this.setStatus('reload failed', msg.error)
    } else if (msg.type === 'preview.stopped') {
      this.setStatus(`stopped (${msg.reason})`)
    }
  }
}
