// The project's git repository: connect (a URL with a token, or one picked from a connected
// account), then pull and commit & push. Work runs as jobs on the server; their progress
// and results arrive as git.* events on the project channel (docs/git.md).
import { api } from './api.js'
import { h } from './dom.js'

const PROVIDERS = ['github', 'gitlab', 'bitbucket']

export class GitPanel {
  constructor ({ root, projectId, onError }) {
    this.root = root
    this.projectId = projectId
    this.onError = onError || (() => {})
    this.repository = null
    this.status = h('div', { class: 'muted', 'data-testid': 'git-status' }, 'Loading…')
    this.body = h('div', {})
    root.replaceChildren(this.status, this.body)
  }

  async show () {
    this.repository = (await api.repository(this.projectId)).repository
    this.render()
  }

  render () {
    const repo = this.repository
    this.root.dataset.state = repo ? repo.sync_status || 'idle' : 'none'
    if (!repo) {
      this.status.textContent = 'No repository connected.'
      this.body.replaceChildren(this.connectForm())
      return
    }
    const last = repo.last_sync_at ? new Date(repo.last_sync_at).toLocaleString() : 'never'
    this.status.textContent = `${repo.repo_full_name} (${repo.default_branch}) · ${repo.sync_status} · last sync ${last}`
    const message = h('input', { placeholder: 'Commit message', 'data-testid': 'git-message' })
    const error = repo.last_error
      ? h('div', { class: 'error', 'data-testid': 'git-error' }, [
        describe(repo.last_error),
        ...(repo.last_error.files || []).map((f) => h('div', { class: 'muted' }, `${f.path}: ${f.reason}`))
      ])
      : null
    this.body.replaceChildren(...[
      h('div', { class: 'row writer-only' }, [
        h('button', { 'data-testid': 'git-pull', onclick: () => this.pull().catch(this.onError) }, 'Pull')
      ]),
      h('div', { class: 'row writer-only' }, [
        message,
        h('button', {
          class: 'primary',
          'data-testid': 'git-push',
          onclick: () => this.push(message.value.trim() || 'Update from the IDE').catch(this.onError)
        }, 'Commit & push')
      ]),
      error
    ].filter(Boolean))
  }

  connectForm () {
    const url = h('input', { placeholder: 'https://github.com/owner/repo', 'data-testid': 'git-url' })
    const token = h('input', { type: 'password', placeholder: 'Access token (private repositories)', 'data-testid': 'git-token' })
    const picked = h('ul', { class: 'git-repos', 'data-testid': 'git-account-repos' })
    const listFrom = (provider) => async () => {
      const { items } = await api.accountRepositories(provider)
      picked.replaceChildren(...items.map((repo) => h('li', {}, [
        h('button', {
          class: 'link',
          'data-testid': 'git-account-repo',
          'data-full-name': repo.full_name,
          onclick: () => this.connect({ repo_url: repo.clone_url, provider, use_account: true }).catch(this.onError)
        }, repo.full_name)
      ])))
    }
    return h('div', { class: 'git-connect writer-only' }, [
      h('div', { class: 'row' }, PROVIDERS.map((p) =>
        h('button', { 'data-testid': `git-list-${p}`, onclick: () => listFrom(p)().catch(this.onError) }, `My ${p} repositories`))),
      picked,
      h('div', { class: 'row' }, [url]),
      h('div', { class: 'row' }, [
        token,
        h('button', {
          'data-testid': 'git-connect',
          onclick: () => this.connect({ repo_url: url.value.trim(), ...(token.value ? { token: token.value } : {}) }).catch(this.onError)
        }, 'Import')
      ])
    ])
  }

  async connect (body) {
    const connected = await api.connectRepository(this.projectId, body)
    this.repository = connected.repository
    this.render()
  }

  async pull () {
    await api.pull(this.projectId)
  }

  async push (message) {
    this.root.dataset.pushed = ''
    await api.push(this.projectId, message)
  }

  /** A git.* event from the project channel. */
  event (msg) {
    if (msg.type === 'git.sync_finished' && msg.operation === 'push' && msg.result && msg.result.pushed) {
      this.root.dataset.pushed = msg.result.commit
    }
    if (msg.type === 'git.progress') {
      this.status.textContent = `${msg.operation}: ${msg.phase}…`
      return
    }
    this.show().catch(this.onError)
  }
}

function describe (error) {
  return `${error.code}: ${error.message}`
}
