// The IDE shell for one project: file tree, editor tabs, chat, versions, terminal, Run,
// presence, all wired to the project channel /ws/projects/{id}.
import { api } from './api.js'
import { h } from './dom.js'
import { Editors } from './editor.js'
import { FileTree } from './tree.js'
import { ChatPanel } from './chat.js'
import { VersionsPanel } from './versions.js'
import { GitPanel } from './git.js'
import { PreviewPanel } from './preview.js'
import { PlanPanel } from './billing.js'
import { TerminalPanel } from './terminal.js'
import { RunPanel } from './run.js'
import { JsonSocket } from './jsonsocket.js'
import { userColor } from './colors.js'
import { hashParams, listProjects, setHashParam } from './projects.js'
import { onSessionChange } from './session.js'
import { settingsDialog } from './connections.js'
import { setAnalyticsProject, track } from './analytics.js'

const OPEN_KEY = (projectId) => `icreate.open.${projectId}`

function tabs (names, onSelect) {
  const bar = h('div', { class: 'panel-tabs' })
  const select = (name) => {
    for (const button of bar.children) button.classList.toggle('active', button.dataset.panel === name)
    onSelect(name)
  }
  for (const name of names) {
    bar.append(h('button', { 'data-panel': name, 'data-testid': `panel-${name.toLowerCase()}`, onclick: () => select(name) }, name))
  }
  return { bar, select }
}

// A file's extension for analytics (never its name or path).
function extension (name) {
  const dot = (name || '').lastIndexOf('.')
  return dot > 0 ? name.slice(dot + 1).toLowerCase().slice(0, 16) : ''
}

export class Ide {
  constructor ({ root, user, project, projects, onSignOut, onSwitch }) {
    this.root = root
    this.user = user
    this.project = project
    this.projectId = project.id
    this.cleanups = []
    this.userTouched = false
    this.members = new Map()
    this.names = new Map()
    this.restored = false
    setAnalyticsProject(project.id)
    this.toast = h('div', { class: 'toast', 'data-testid': 'toast', role: 'status' })
    const showError = (err) => this.error(err)

    // Header
    const projectSelect = h('select', { 'data-testid': 'project-select', onchange: () => onSwitch(projectSelect.value) },
      projects.map(({ project: p, workspace: w }) => h('option', { value: p.id }, w.name ? `${w.name} / ${p.name}` : p.name)))
    projectSelect.value = project.id
    // Someone may have invited us since the page loaded: list again when the menu opens.
    let listing = null
    projectSelect.addEventListener('focus', () => {
      listing = listing || listProjects().then((all) => {
        projectSelect.replaceChildren(...all.map(({ project: p, workspace: w }) => h('option', { value: p.id }, w.name ? `${w.name} / ${p.name}` : p.name)))
        projectSelect.value = project.id
      }).catch(showError).finally(() => { listing = null })
    })
    const inviteEmail = h('input', { type: 'email', placeholder: 'invite by email', 'data-testid': 'invite-email' })
    const inviteRole = h('select', { 'data-testid': 'invite-role' }, ['member', 'viewer', 'admin'].map((r) => h('option', { value: r }, r)))
    const invite = async () => {
      await api.invite(project.workspace_id, inviteEmail.value.trim(), inviteRole.value)
      track('invite_sent', 'collaboration', { role: inviteRole.value })
      this.info(`${inviteEmail.value.trim()} can now open this project`)
      inviteEmail.value = ''
    }
    const header = h('header', {}, [
      h('span', { class: 'brand' }, 'iCreateTechs'),
      projectSelect,
      h('button', { 'data-testid': 'new-project', onclick: () => this.newProject(onSwitch).catch(showError) }, 'New project'),
      h('span', { class: 'spacer' }),
      inviteEmail, inviteRole,
      h('button', { 'data-testid': 'invite', onclick: () => invite().catch(showError) }, 'Invite'),
      h('span', { class: 'user', 'data-testid': 'current-user' }, [
        h('span', { class: 'dot', style: { background: userColor(user.id) } }),
        user.full_name || user.email
      ]),
      h('button', { 'data-testid': 'open-settings', onclick: () => this.openSettings().catch(showError) }, 'Settings'),
      h('button', { 'data-testid': 'sign-out', onclick: () => onSignOut() }, 'Sign out')
    ])
    this.settings = settingsDialog(showError, (text) => this.info(text))

    // Left: presence and files
    this.presence = h('ul', { class: 'presence', 'data-testid': 'presence' })
    const newName = h('input', { placeholder: 'new file name', 'data-testid': 'new-file-name' })
    const create = async (type) => {
      const file = await this.tree.create(newName.value, type)
      newName.value = ''
      if (file && type === 'file') this.openFile(file)
    }
    newName.addEventListener('keydown', (e) => { if (e.key === 'Enter') create('file').catch(showError) })
    const treeRoot = h('ul', { class: 'tree', 'data-testid': 'file-tree' })
    const left = h('aside', { class: 'left' }, [
      h('h2', {}, 'Online'), this.presence,
      h('h2', {}, 'Files'),
      h('div', { class: 'row writer-only' }, [
        newName,
        h('button', { title: 'New file', 'data-testid': 'new-file', onclick: () => create('file').catch(showError) }, '+ File'),
        h('button', { title: 'New folder', 'data-testid': 'new-folder', onclick: () => create('folder').catch(showError) }, '+ Dir')
      ]),
      treeRoot
    ])

    // Center: editor tabs, Run, bottom panel (terminal, output)
    const editorTabs = h('div', { class: 'tabs', 'data-testid': 'tabs' })
    const panes = h('div', { class: 'panes', 'data-testid': 'editor' }, [
      h('div', { class: 'placeholder' }, 'Open a file from the tree, or create one.')
    ])
    const runStatus = h('span', { class: 'muted', 'data-testid': 'run-status' })
    const runOutput = h('pre', { class: 'run-output', 'data-testid': 'run-output' })
    const terminalRoot = h('div', { class: 'terminal', 'data-testid': 'terminal' })
    const bottomPanels = { Terminal: terminalRoot, Output: runOutput }
    const bottomTabs = tabs(Object.keys(bottomPanels), (name) => {
      for (const [key, el] of Object.entries(bottomPanels)) el.hidden = key !== name
      if (name === 'Terminal' && this.terminal) this.terminal.resize()
    })
    const runButton = h('button', { class: 'primary writer-only', 'data-testid': 'run', onclick: () => this.run(bottomTabs).catch(showError) }, '▶ Run')
    const aiInstruction = h('input', { class: 'writer-only ai-instruction', 'data-testid': 'ai-edit-input', placeholder: 'Ask the assistant to edit the selection…' })
    const aiButton = h('button', {
      class: 'writer-only',
      'data-testid': 'ai-edit-run',
      onclick: () => this.assistantEdit(aiInstruction).catch(showError)
    }, 'AI edit')
    const analysisType = h('select', { class: 'writer-only', 'data-testid': 'analysis-type' },
      ['security', 'complexity', 'performance', 'explain'].map((t) => h('option', { value: t }, t)))
    const analyseButton = h('button', {
      class: 'writer-only',
      'data-testid': 'analyse',
      onclick: () => this.analyse(analysisType.value).catch(showError)
    }, 'Analyse')
    const center = h('main', {}, [
      h('div', { class: 'editor-bar' }, [editorTabs, h('span', { class: 'spacer' }), analysisType, analyseButton, aiInstruction, aiButton, runStatus, runButton]),
      panes,
      h('section', { class: 'bottom' }, [bottomTabs.bar, terminalRoot, runOutput])
    ])

    // Right: chat and versions
    const chatRoot = h('div', { class: 'chat', 'data-testid': 'chat' })
    const versionsRoot = h('div', { class: 'versions-panel', 'data-testid': 'versions' })
    const gitRoot = h('div', { class: 'git-panel', 'data-testid': 'git' })
    const previewRoot = h('div', { class: 'preview-panel', 'data-testid': 'preview' })
    const planRoot = h('div', { class: 'plan-panel', 'data-testid': 'plan', hidden: true })
    const sidePanels = { Chat: chatRoot, Versions: versionsRoot, Git: gitRoot, Preview: previewRoot, Plan: planRoot }
    const sideTabs = tabs(Object.keys(sidePanels), (name) => {
      for (const [key, el] of Object.entries(sidePanels)) el.hidden = key !== name
      if (name === 'Versions') this.versions.show(this.editors.activeFile()).catch(showError)
      if (name === 'Git') this.git.show().catch(showError)
      if (name === 'Preview') this.preview.show().catch(showError)
      if (name === 'Plan') this.plan.show().catch(showError)
    })
    const right = h('aside', { class: 'right' }, [sideTabs.bar, chatRoot, versionsRoot, gitRoot, previewRoot, planRoot])

    root.replaceChildren(h('div', { class: 'ide', 'data-testid': 'ide', 'data-project-id': project.id }, [header, left, center, right, this.toast, this.settings.root]))

    this.editors = new Editors({ tabs: editorTabs, panes, user, onChange: () => this.editorChanged() })
    this.tree = new FileTree({
      root: treeRoot,
      projectId: project.id,
      onOpen: (file) => this.openFile(file),
      onDeleted: (id) => this.editors.close(id),
      onRenamed: (file) => this.editors.rename(file),
      onError: showError
    })
    this.versions = new VersionsPanel({ root: versionsRoot, onError: showError })
    this.git = new GitPanel({ root: gitRoot, projectId: project.id, onError: showError })
    this.preview = new PreviewPanel({ root: previewRoot, projectId: project.id, onError: showError })
    this.plan = new PlanPanel({ root: planRoot, onError: showError })
    this.chat = new ChatPanel({
      root: chatRoot,
      projectId: project.id,
      onError: showError,
      onConversation: (id) => setHashParam('conversation', id),
      onApply: (messageId) => this.assistantEdit(null, messageId),
      context: () => {
        const file = this.editors.activeFile()
        return file ? { file_id: file.id, path: file.path, project_id: project.id } : { project_id: project.id }
      }
    })
    this.runner = new RunPanel({ output: runOutput, status: runStatus, projectId: project.id, onError: showError })
    bottomTabs.select('Terminal')
    sideTabs.select('Chat')

    this.channel = new JsonSocket(`/ws/projects/${encodeURIComponent(project.id)}`, {
      onMessage: (msg) => this.channelMessage(msg),
      onOpen: () => this.sendEditorState(),
      onStatus: (status) => { this.root.dataset.channel = status }
    })
    this.terminal = new TerminalPanel({ root: terminalRoot, projectId: project.id, onStatus: (s) => { terminalRoot.dataset.status = s } })
    this.cleanups.push(onSessionChange((session) => { if (session) this.editors.setToken(session.access_token) }))
  }

  async start () {
    this.loadNames()
    await this.tree.load()
    this.treeLoaded = true
    await this.chat.load(hashParams().get('conversation'))
    if (this.pendingState) this.restore(this.pendingState, 'server')
    else if (this.pendingFallback) this.fallback()
    // Without the project channel there is no stored session: use this tab's memory.
    this.fallbackTimer = setTimeout(() => this.fallback(), 5000)
  }

  /** No editor session on the server: this tab's memory, else the first file. */
  fallback () {
    if (this.restored || this.userTouched) return
    if (!this.treeLoaded) {
      this.pendingFallback = true
      return
    }
    const local = this.localState()
    if (local && local.open_files && local.open_files.length) {
      this.restore(local, 'local')
      return
    }
    // A first visit: show the first file rather than an empty editor.
    const first = [...this.tree.files.values()].filter((f) => f.type === 'file' && !f.storage_path).sort((a, b) => a.path.localeCompare(b.path))[0]
    this.restore({ open_files: first ? [first.id] : [], active_file_id: first ? first.id : null }, 'first-file')
  }

  localState () {
    try {
      return JSON.parse(sessionStorage.getItem(OPEN_KEY(this.projectId)) || 'null')
    } catch {
      return null
    }
  }

  restore (state, source) {
    if (this.restored || this.userTouched || !state) return
    if (!this.treeLoaded) {
      this.pendingState = state
      return
    }
    this.restored = true
    const ids = (state.open_files || []).map((f) => (typeof f === 'string' ? f : f.file_id || f.id)).filter(Boolean)
    for (const id of ids) {
      const file = this.tree.byId(id)
      if (file && file.type !== 'folder') this.editors.openFile(file, { activate: false })
    }
    const active = state.active_file_id || state.active_file
    if (active && this.editors.open.has(active)) this.editors.activate(active)
    this.root.dataset.restoredFrom = source
  }

  openFile (file) {
    if (file.storage_path) {
      // A binary or large file is never a document: it is downloaded, not edited.
      this.download(file).catch((err) => this.error(err))
      return
    }
    this.userTouched = true
    this.restored = true
    this.editors.openFile(file)
    track('file_opened', 'editor', { extension: extension(file.name) })
  }

  async download (file) {
    const url = URL.createObjectURL(await api.download(file.id))
    h('a', { href: url, download: file.name }).click()
    setTimeout(() => URL.revokeObjectURL(url), 1000)
  }

  editorChanged () {
    if (this.destroyed) return
    const file = this.editors.activeFile()
    const state = this.editors.state()
    sessionStorage.setItem(OPEN_KEY(this.projectId), JSON.stringify({ open_files: state.open_files, active_file_id: state.active_file }))
    if (!this.versions.root.hidden) this.versions.show(file).catch((err) => this.error(err))
    clearTimeout(this.stateTimer)
    this.stateTimer = setTimeout(() => this.sendEditorState(), 300)
  }

  sendEditorState () {
    if (!this.editors) return
    const state = this.editors.state()
    this.root.dataset.editorStateSent = `${state.open_files.join(',')}|${state.active_file || ''}`
    this.channel.send({
      type: 'editor_state',
      open_files: state.open_files.map((id) => ({ file_id: id })),
      active_file_id: state.active_file,
      layout_state: {}
    })
  }

  /** Analyse the active file's selected lines (else all of it); a cached result shows at
   * once, a new one arrives as `analysis.completed` on the project channel. */
  async analyse (type) {
    const entry = this.editors.activeEntry()
    if (!entry) return
    const body = { type }
    const selection = entry.selection()
    if (selection) {
      const doc = entry.view.state.doc
      body.selection = { from_line: doc.lineAt(selection.from).number, to_line: doc.lineAt(selection.to).number }
    }
    const answer = await api.analyse(entry.file.id, body)
    if (answer.cached) this.editors.showAnalysis(answer.analysis)
  }

  /** The assistant rewrites the selection (else the whole file) of the active editor. */
  async assistantEdit (input, messageId = null) {
    const entry = this.editors.activeEntry()
    const instruction = input ? input.value.trim() : ''
    if (!entry || (!instruction && !messageId)) return
    const body = messageId ? { message_id: messageId } : { instruction }
    const selection = entry.selection()
    if (selection) body.selection = selection
    await api.aiEdit(entry.file.id, body)
    if (input) input.value = ''
  }

  channelMessage (msg) {
    const type = msg.type || ''
    if (type.startsWith('file.')) {
      this.tree.apply(type, msg.file)
      const active = this.editors.activeFile()
      if (active && msg.file && msg.file.id === active.id && !this.versions.root.hidden) this.versions.refresh().catch(() => {})
    } else if (type.startsWith('execution.')) {
      this.runner.event(msg)
    } else if (type.startsWith('ai_edit.')) {
      this.editors.assistantEvent(msg)
    } else if (type === 'analysis.completed') {
      this.editors.showAnalysis(msg.analysis)
    } else if (type.startsWith('deployment.') || type.startsWith('preview.')) {
      this.preview.event(msg)
    } else if (type.startsWith('git.')) {
      if (type === 'git.tree_changed') this.tree.load().catch((err) => this.error(err))
      this.git.event(msg)
    } else if (type === 'hello') {
      // Joined: file events from here on arrive on the channel. Those published before
      // (while connecting, or while a dropped socket was away) are in a fresh listing.
      this.tree.load()
        .then(() => { if (this.root.dataset.channel === 'open') this.root.dataset.channel = 'joined' })
        .catch((err) => this.error(err))
      this.members = new Map((msg.presence || []).map((m) => [m.connection_id, m]))
      this.renderPresence()
      this.setRole(msg.role)
      const state = msg.editor_state
      if (state && state.open_files && state.open_files.length) this.restore(state, 'server')
      else this.fallback()
    } else if (type === 'presence.join' || type === 'presence.update') {
      this.members.set(msg.member.connection_id, msg.member)
      this.renderPresence()
    } else if (type === 'presence.leave') {
      this.members.delete(msg.connection_id)
      this.renderPresence()
    } else if (type === 'error') {
      this.error(new Error(msg.message || msg.code))
    }
  }

  /** Display names of the workspace's members (presence carries only ids and emails). */
  async loadNames () {
    try {
      for (const m of await api.members(this.project.workspace_id)) if (m.full_name) this.names.set(m.user_id, m.full_name)
      this.renderPresence()
    } catch (err) {
      console.warn('members not loaded', err)
    }
  }

  renderPresence () {
    // One row per user, however many tabs or windows they have open.
    const users = new Map()
    for (const m of this.members.values()) if (!users.has(m.user_id) || m.file_id) users.set(m.user_id, m)
    this.presence.replaceChildren(...[...users.values()].map((u) => {
      const file = u.file_id ? this.tree.byId(u.file_id) : null
      return h('li', { 'data-testid': 'presence-user', 'data-user-id': u.user_id, title: u.role || '' }, [
        h('span', { class: 'dot', style: { background: userColor(u.user_id) } }),
        u.user_id === this.user.id ? `${this.user.full_name || u.name || u.email} (you)` : (this.names.get(u.user_id) || u.name || u.email || 'someone'),
        file ? h('span', { class: 'muted' }, ` · ${file.name}`) : null
      ])
    }))
  }

  setRole (role) {
    this.role = role
    const readOnly = role === 'viewer'
    this.root.dataset.role = role || ''
    this.tree.readOnly = readOnly
    this.editors.setReadOnly(readOnly)
    this.tree.render()
  }

  async run (bottomTabs) {
    bottomTabs.select('Output')
    const file = this.editors.activeFile()
    await this.runner.run(file)
    if (file) track('run_started', 'execution', { extension: extension(file.name) })
  }

  async newProject (onSwitch) {
    const name = prompt('Project name', 'untitled')
    if (!name) return
    const project = await api.createProject(this.project.workspace_id, name)
    onSwitch(project.id)
  }

  openSettings () {
    return this.settings.open()
  }

  info (text) {
    this.toast.textContent = text
    this.toast.className = 'toast show'
    clearTimeout(this.toastTimer)
    this.toastTimer = setTimeout(() => { this.toast.className = 'toast' }, 4000)
  }

  error (err) {
    console.error(err)
    this.info(`⚠ ${err && err.message ? err.message : String(err)}`)
    this.toast.className = 'toast show error'
  }

  destroy () {
    this.destroyed = true
    setAnalyticsProject(null)
    clearTimeout(this.stateTimer)
    clearTimeout(this.fallbackTimer)
    this.channel.close()
    this.chat.close()
    this.terminal.close()
    this.editors.closeAll()
    for (const cleanup of this.cleanups) cleanup()
  }
}
