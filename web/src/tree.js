// The project's file tree: loaded over REST, kept live by file.* events from the project channel.
import { api } from './api.js'
import { h } from './dom.js'

export class FileTree {
  constructor ({ root, projectId, onOpen, onDeleted, onRenamed, onError }) {
    this.root = root
    this.projectId = projectId
    this.onOpen = onOpen
    this.onDeleted = onDeleted || (() => {})
    this.onRenamed = onRenamed || (() => {})
    this.onError = onError || (() => {})
    this.files = new Map()
    this.arriving = [] // one list per load in flight: the events it must not lose
    this.selectedFolder = null
    this.collapsed = new Set()
    this.readOnly = false
  }

  /** The whole tree over REST. Events that arrive while the list is on its way may be
   * newer than it: they are applied again on top of it, not lost. */
  async load () {
    const arrived = []
    this.arriving.push(arrived)
    let files
    try {
      files = await api.files(this.projectId)
    } finally {
      this.arriving.splice(this.arriving.indexOf(arrived), 1)
    }
    this.files = new Map(files.filter((f) => !f.is_deleted).map((f) => [f.id, f]))
    for (const [type, file] of arrived) this.apply(type, file)
    this.render()
  }

  byId (id) {
    return this.files.get(id) || null
  }

  /** A file.* event from the project channel (or our own REST answer). */
  apply (type, file) {
    if (!file || !file.id) return
    for (const arrived of this.arriving) arrived.push([type, file])
    if (type === 'file.deleted' || file.is_deleted) {
      for (const id of this.subtree(file.id)) {
        this.files.delete(id)
        this.onDeleted(id)
      }
    } else {
      const before = this.files.get(file.id)
      this.files.set(file.id, { ...before, ...file })
      if (before && file.type === 'folder' && (before.path !== file.path)) this.load().catch(this.onError)
      if (before && before.name !== file.name) this.onRenamed(this.files.get(file.id))
    }
    this.render()
  }

  subtree (id) {
    const out = [id]
    for (const f of this.files.values()) if (f.parent_id === id) out.push(...this.subtree(f.id))
    return out
  }

  async create (name, type) {
    name = name.trim()
    if (!name) return null
    const file = await api.createFile(this.projectId, { name, type, parent_id: this.selectedFolder })
    this.apply('file.created', file)
    return file
  }

  async rename (file, name) {
    const updated = await api.renameFile(file.id, name)
    this.apply('file.renamed', updated || { ...file, name })
  }

  async remove (file) {
    await api.deleteFile(file.id)
    this.apply('file.deleted', file)
  }

  children (parentId) {
    return [...this.files.values()]
      .filter((f) => (f.parent_id || null) === parentId)
      .sort((a, b) => (a.type === b.type ? a.name.localeCompare(b.name) : a.type === 'folder' ? -1 : 1))
  }

  render () {
    const rows = []
    const walk = (parentId, depth) => {
      for (const file of this.children(parentId)) {
        rows.push(this.row(file, depth))
        if (file.type === 'folder' && !this.collapsed.has(file.id)) walk(file.id, depth + 1)
      }
    }
    walk(null, 0)
    if (!rows.length) rows.push(h('li', { class: 'empty' }, 'No files yet'))
    this.root.replaceChildren(...rows)
  }

  row (file, depth) {
    const folder = file.type === 'folder'
    const label = h('span', { class: 'tree-name', 'data-testid': 'tree-name' }, file.name)
    const li = h('li', {
      class: `tree-row ${folder ? 'folder' : 'file'}${file.storage_path ? ' binary' : ''}${this.selectedFolder === file.id ? ' selected' : ''}`,
      'data-testid': 'tree-item',
      'data-file-id': file.id,
      'data-path': file.path,
      'data-depth': depth,
      onclick: () => {
        if (folder) {
          this.selectedFolder = this.selectedFolder === file.id ? null : file.id
          if (this.collapsed.has(file.id)) this.collapsed.delete(file.id)
          else if (this.selectedFolder === null) this.collapsed.add(file.id)
          this.render()
        } else {
          this.onOpen(file)
        }
      }
    }, [
      h('span', { class: 'indent', 'data-depth': Math.min(depth, 8) }),
      h('span', { class: 'icon' }, folder ? (this.collapsed.has(file.id) ? '▸' : '▾') : '·'),
      label,
      this.readOnly
        ? null
        : h('span', { class: 'tree-actions' }, [
          h('button', { title: 'Rename', 'data-testid': 'rename', onclick: (e) => { e.stopPropagation(); this.editName(li, label, file) } }, '✎'),
          h('button', {
            title: 'Delete',
            'data-testid': 'delete',
            onclick: (e) => {
              e.stopPropagation()
              if (confirm(`Delete ${file.path || file.name}?`)) this.remove(file).catch(this.onError)
            }
          }, '×')
        ])
    ])
    return li
  }

  editName (li, label, file) {
    const input = h('input', { class: 'rename-input', 'data-testid': 'rename-input', value: file.name })
    let finished = false
    const done = (save) => {
      if (finished) return
      finished = true
      const name = input.value.trim()
      input.replaceWith(label)
      if (save && name && name !== file.name) this.rename(file, name).catch(this.onError)
    }
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') done(true)
      if (e.key === 'Escape') done(false)
    })
    input.addEventListener('blur', () => done(true), { once: true })
    input.addEventListener('click', (e) => e.stopPropagation())
    label.replaceWith(input)
    input.focus()
    input.select()
  }
}
