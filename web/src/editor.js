// Open files as tabs: each is a Y.Doc bound to /ws/docs/{file_id} through the stock
// y-websocket provider and shown in CodeMirror 6 with remote cursors from awareness.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { yCollab } from 'y-codemirror.next'
import { basicSetup } from 'codemirror'
import { EditorView } from '@codemirror/view'
import { EditorState, Compartment } from '@codemirror/state'
import { javascript } from '@codemirror/lang-javascript'
import { python } from '@codemirror/lang-python'
import { refresh, socketBase } from './api.js'
import { accessToken } from './session.js'
import { lighten, userColor } from './colors.js'
import { h } from './dom.js'
import { AssistantEdits } from './aiedit.js'
import { showAnalysis } from './analysis.js'
import { lintGutter } from '@codemirror/lint'

function languageFor (name) {
  if (/\.(m?js|jsx|ts|tsx)$/.test(name)) return javascript({ typescript: /\.tsx?$/.test(name), jsx: /x$/.test(name) })
  if (/\.py$/.test(name)) return python()
  return []
}

class OpenFile {
  constructor (file, user, readOnly, onStatus) {
    this.file = file
    this.doc = new Y.Doc()
    this.text = this.doc.getText('content')
    this.provider = new WebsocketProvider(socketBase() + '/ws/docs', file.id, this.doc, {
      params: { token: accessToken() },
      disableBc: true
    })
    const color = userColor(user.id)
    this.provider.awareness.setLocalStateField('user', {
      name: user.full_name || user.email || 'anonymous',
      color,
      colorLight: lighten(color),
      id: user.id
    })
    this.forbidden = 0
    this.provider.on('status', ({ status }) => onStatus(this, status))
    this.provider.on('sync', (synced) => {
      if (synced) this.forbidden = 0
      onStatus(this, synced ? 'synced' : 'syncing')
    })
    this.provider.on('connection-close', async (event) => {
      const code = event && event.code
      // An expired token: get a new one before the provider's own reconnect.
      if (code === 4401 && (await refresh())) this.provider.params = { token: accessToken() }
      // A 4403 is retried a few times (see jsonsocket.js); a missing file is final.
      else if (code === 4404 || code === 4401 || (code === 4403 && ++this.forbidden > 3)) this.provider.shouldConnect = false
    })
    this.readOnly = new Compartment()
    this.assistant = new AssistantEdits(this.doc, this.text, this.provider)
    this.dom = h('div', { class: 'editor-pane', 'data-file-id': file.id }, [this.assistant.bar])
    this.view = new EditorView({
      parent: this.dom,
      state: EditorState.create({
        doc: this.text.toString(),
        extensions: [
          basicSetup,
          languageFor(file.name),
          lintGutter(),
          yCollab(this.text, this.provider.awareness, { undoManager: new Y.UndoManager(this.text) }),
          this.readOnly.of(EditorState.readOnly.of(readOnly)),
          EditorView.theme({ '&': { height: '100%' }, '.cm-scroller': { overflow: 'auto' } })
        ]
      })
    })
  }

  setToken (token) {
    this.provider.params = { token }
  }

  /** The selection in the editor's offsets (UTF-16, as Yjs counts); null when empty. */
  selection () {
    const { from, to } = this.view.state.selection.main
    return from === to ? null : { from, to }
  }

  destroy () {
    this.assistant.destroy()
    this.view.destroy()
    this.provider.destroy()
    this.doc.destroy()
    this.dom.remove()
  }
}

export class Editors {
  constructor ({ tabs, panes, user, onChange }) {
    this.tabs = tabs
    this.panes = panes
    this.user = user
    this.onChange = onChange || (() => {})
    this.open = new Map()
    this.active = null
    this.readOnly = false
  }

  openFile (file, { activate = true } = {}) {
    let entry = this.open.get(file.id)
    if (!entry) {
      entry = new OpenFile(file, this.user, this.readOnly, (opened, status) => this.renderTabs())
      this.open.set(file.id, entry)
      this.panes.append(entry.dom)
    }
    if (activate || !this.active) this.activate(file.id)
    else this.renderTabs()
    this.onChange()
    return entry
  }

  activate (fileId) {
    this.active = fileId
    for (const [id, entry] of this.open) entry.dom.hidden = id !== fileId
    this.renderTabs()
    const entry = this.open.get(fileId)
    if (entry) entry.view.focus()
    this.onChange()
  }

  close (fileId) {
    const entry = this.open.get(fileId)
    if (!entry) return
    entry.destroy()
    this.open.delete(fileId)
    if (this.active === fileId) {
      const next = [...this.open.keys()].pop() || null
      if (next) this.activate(next)
      else this.active = null
    }
    this.renderTabs()
    this.onChange()
  }

  rename (file) {
    const entry = this.open.get(file.id)
    if (entry) {
      entry.file = { ...entry.file, ...file }
      this.renderTabs()
    }
  }

  activeFile () {
    const entry = this.open.get(this.active)
    return entry ? entry.file : null
  }

  activeEntry () {
    return this.open.get(this.active) || null
  }

  /** A project-channel event of an AI edit: the open file's review bar follows it. */
  assistantEvent (msg) {
    const edit = msg.edit
    const entry = edit ? this.open.get(edit.file_id) : null
    if (!entry) return
    if (msg.type === 'ai_edit.started') entry.assistant.started(edit)
    else if (msg.type === 'ai_edit.finished') entry.assistant.finished(edit)
  }

  /** A finished analysis: annotations in the file's editor, if it is open. */
  showAnalysis (analysis) {
    const entry = this.open.get(analysis.file_id)
    return entry ? showAnalysis(entry, analysis) : 0
  }

  activeText () {
    const entry = this.open.get(this.active)
    return entry ? entry.text.toString() : ''
  }

  state () {
    return { open_files: [...this.open.keys()], active_file: this.active }
  }

  setToken (token) {
    for (const entry of this.open.values()) entry.setToken(token)
  }

  /** Viewers read along; the server drops their edits anyway, this keeps the UI honest. */
  setReadOnly (readOnly) {
    this.readOnly = readOnly
    for (const entry of this.open.values()) {
      entry.view.dispatch({ effects: entry.readOnly.reconfigure(EditorState.readOnly.of(readOnly)) })
    }
  }

  closeAll () {
    for (const id of [...this.open.keys()]) this.close(id)
  }

  renderTabs () {
    this.tabs.replaceChildren(...[...this.open.values()].map((entry) => {
      const status = entry.provider.synced ? 'synced' : (entry.provider.wsconnected ? 'syncing' : 'offline')
      return h('div', {
        class: `tab${entry.file.id === this.active ? ' active' : ''}`,
        'data-testid': 'tab',
        'data-file-id': entry.file.id,
        'data-status': status,
        onclick: () => this.activate(entry.file.id)
      }, [
        h('span', { class: `dot ${status}`, title: status }),
        h('span', { class: 'tab-name' }, entry.file.name),
        h('button', {
          class: 'tab-close',
          title: 'Close',
          onclick: (event) => { event.stopPropagation(); this.close(entry.file.id) }
        }, '×')
      ])
    }))
  }
}
