// The active file's versions: save a checkpoint, list, restore (a restore is a new version).
import { api } from './api.js'
import { h } from './dom.js'

export class VersionsPanel {
  constructor ({ root, onError }) {
    this.root = root
    this.onError = onError || (() => {})
    this.file = null
    this.list = h('ul', { class: 'versions', 'data-testid': 'versions-list' })
    this.message = h('input', { placeholder: 'What changed?', 'data-testid': 'version-message' })
    this.title = h('div', { class: 'muted', 'data-testid': 'versions-file' }, 'No file open')
    root.replaceChildren(
      this.title,
      h('div', { class: 'row' }, [
        this.message,
        h('button', { 'data-testid': 'save-version', onclick: () => this.save().catch(this.onError) }, 'Save version')
      ]),
      this.list,
      h('button', { class: 'link', onclick: () => this.refresh().catch(this.onError) }, 'Refresh')
    )
  }

  async show (file) {
    this.file = file
    this.title.textContent = file ? file.path || file.name : 'No file open'
    await this.refresh()
  }

  async refresh () {
    if (!this.file) {
      this.list.replaceChildren()
      return
    }
    const fileId = this.file.id
    const versions = await api.versions(fileId)
    if (!this.file || this.file.id !== fileId) return
    versions.sort((a, b) => (b.version_number || 0) - (a.version_number || 0))
    this.list.replaceChildren(...versions.map((v) => h('li', { 'data-testid': 'version', 'data-version-id': v.id }, [
      h('span', { class: 'version-number' }, `v${v.version_number ?? '?'}`),
      h('span', { class: 'version-meta' }, [
        h('span', {}, v.change_message || 'autosave'),
        h('span', { class: 'muted' }, v.created_at ? new Date(v.created_at).toLocaleString() : '')
      ]),
      h('button', { 'data-testid': 'restore-version', onclick: () => this.restore(v).catch(this.onError) }, 'Restore')
    ])))
    if (!versions.length) this.list.append(h('li', { class: 'muted' }, 'No versions yet'))
  }

  async save () {
    if (!this.file) return
    await api.saveVersion(this.file.id, this.message.value.trim() || null)
    this.message.value = ''
    await this.refresh()
  }

  async restore (version) {
    if (!this.file) return
    await api.restoreVersion(this.file.id, version.version_number)
    await this.refresh()
  }
}
