// The REST API (/api/v1), with the access token attached and refreshed once on 401.
import { getSession, setSession } from './session.js'

export class ApiError extends Error {
  constructor (status, code, message) {
    super(message || code || `HTTP ${status}`)
    this.status = status
    this.code = code
  }
}

const BASE = '/api/v1'
let refreshing = null

async function send (method, path, body, { auth = true, retry = true, keepalive = false } = {}) {
  const headers = { Accept: 'application/json' }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const session = getSession()
  if (auth && session) headers.Authorization = `Bearer ${session.access_token}`
  const response = await fetch(BASE + path, {
    method,
    headers,
    keepalive,
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  if (response.status === 401 && auth && retry && session && session.refresh_token) {
    if (await refresh()) return send(method, path, body, { auth, retry: false, keepalive })
  }
  if (response.status === 204) return null
  const text = await response.text()
  const data = text ? JSON.parse(text) : null
  if (!response.ok) {
    const error = (data && data.error) || {}
    throw new ApiError(response.status, error.code, error.message)
  }
  return data
}

// Sign-in and refresh answers carry the tokens at the top level or under "session".
function sessionFrom (data, previous) {
  const tokens = data.session || data
  return {
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token || (previous && previous.refresh_token),
    user: data.user || (previous && previous.user) || null
  }
}

/** Exchange the refresh token for new tokens; false (and signed out) if it is refused. */
export function refresh () {
  if (!refreshing) {
    refreshing = (async () => {
      const session = getSession()
      try {
        const data = await send('POST', '/auth/refresh', { refresh_token: session.refresh_token }, { auth: false })
        setSession(sessionFrom(data, session))
        return true
      } catch {
        setSession(null)
        return false
      } finally {
        refreshing = null
      }
    })()
  }
  return refreshing
}

async function signedIn (data) {
  const session = sessionFrom(data, null)
  setSession(session)
  // The token answer names only id and email; the profile has the display name.
  setSession({ ...session, user: { ...session.user, ...(await api.me()) } })
  return getSession()
}

/** A page of a keyset-paginated list: the items, whatever the envelope is called. */
function items (page) {
  if (Array.isArray(page)) return page
  return page.items || page.data || page.results || []
}

async function all (path) {
  const out = []
  let cursor = null
  for (let i = 0; i < 50; i++) {
    const sep = path.includes('?') ? '&' : '?'
    const page = await send('GET', cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path)
    out.push(...items(page))
    cursor = page && !Array.isArray(page) ? page.next_cursor : null
    if (!cursor) break
  }
  return out
}

const enc = encodeURIComponent

export const api = {
  signUp: async (email, password, fullName) =>
    signedIn(await send('POST', '/auth/signup', { email, password, full_name: fullName }, { auth: false })),
  signIn: async (email, password) =>
    signedIn(await send('POST', '/auth/signin', { email, password }, { auth: false })),
  signOut: async () => {
    const session = getSession()
    try {
      if (session) await send('POST', '/auth/signout', { refresh_token: session.refresh_token })
    } finally {
      setSession(null)
    }
  },
  me: () => send('GET', '/me'),

  // Sign in with / connect a provider (the start answer sets a cookie binding the flow to
  // this browser; the page then navigates to the provider).
  providers: async () => (await send('GET', '/auth/providers', undefined, { auth: false })).providers,
  startOAuth: (provider, purpose) =>
    send('POST', `/auth/oauth/${enc(provider)}/start`, { purpose }, { auth: purpose === 'connect' }),
  exchangeOAuth: async (code) =>
    signedIn(await send('POST', '/auth/oauth/exchange', { code }, { auth: false })),
  connections: () => send('GET', '/me/connections'),
  disconnect: (provider) => send('DELETE', `/me/connections/${enc(provider)}`),

  workspaces: () => all('/workspaces'),
  createWorkspace: (name) => send('POST', '/workspaces', { name }),
  members: (workspaceId) => all(`/workspaces/${enc(workspaceId)}/members`),
  invite: (workspaceId, email, role) => send('POST', `/workspaces/${enc(workspaceId)}/members`, { email, role }),
  projects: (workspaceId) => all(`/workspaces/${enc(workspaceId)}/projects`),
  createProject: (workspaceId, name) => send('POST', `/workspaces/${enc(workspaceId)}/projects`, { name }),
  project: (projectId) => send('GET', `/projects/${enc(projectId)}`),

  files: (projectId) => all(`/projects/${enc(projectId)}/files`),
  createFile: (projectId, body) => send('POST', `/projects/${enc(projectId)}/files`, body),
  file: (fileId) => send('GET', `/files/${enc(fileId)}`),
  renameFile: (fileId, name) => send('PATCH', `/files/${enc(fileId)}`, { name }),
  deleteFile: (fileId) => send('DELETE', `/files/${enc(fileId)}`),
  versions: (fileId) => all(`/files/${enc(fileId)}/versions`),
  saveVersion: (fileId, changeMessage) => send('POST', `/files/${enc(fileId)}/save`, { change_message: changeMessage }),
  restoreVersion: (fileId, versionNumber) => send('POST', `/files/${enc(fileId)}/versions/${enc(versionNumber)}/restore`),

  conversation: (conversationId) => send('GET', `/conversations/${enc(conversationId)}`),
  conversations: (projectId) => all(`/projects/${enc(projectId)}/conversations`),
  createConversation: (projectId, title) => send('POST', `/projects/${enc(projectId)}/conversations`, { title }),
  messages: (conversationId) => all(`/conversations/${enc(conversationId)}/messages`),

  execute: (projectId, body) => send('POST', `/projects/${enc(projectId)}/executions`, body),

  aiEdit: (fileId, body) => send('POST', `/files/${enc(fileId)}/ai-edits`, body),
  analyse: (fileId, body) => send('POST', `/files/${enc(fileId)}/analyses`, body),
  // A binary or large file's bytes (never a document): a Blob to save.
  download: async (fileId) => {
    const session = getSession()
    const response = await fetch(BASE + `/files/${enc(fileId)}/download`, {
      headers: session ? { Authorization: `Bearer ${session.access_token}` } : {}
    })
    if (!response.ok) throw new ApiError(response.status, 'download_failed', 'the download failed')
    return response.blob()
  },

  // Git (docs/git.md): jobs answer 202 with a job id; progress comes on the project channel.
  repository: (projectId) => send('GET', `/projects/${enc(projectId)}/git`),
  connectRepository: (projectId, body) => send('POST', `/projects/${enc(projectId)}/git`, body),
  pull: (projectId) => send('POST', `/projects/${enc(projectId)}/git/pull`),
  push: (projectId, message, branch) =>
    send('POST', `/projects/${enc(projectId)}/git/push`, branch ? { message, branch } : { message }),
  accountRepositories: (provider) => send('GET', `/git/accounts/${enc(provider)}/repositories`),
  gitJob: (projectId, jobId) => send('GET', `/projects/${enc(projectId)}/git/jobs/${enc(jobId)}`),

  // Deployments and the live preview (docs/deployments.md).
  deploy: (projectId, body) => send('POST', `/projects/${enc(projectId)}/deployments`, body),
  deployments: (projectId, environment) =>
    send('GET', `/projects/${enc(projectId)}/deployments?environment=${enc(environment)}&limit=1`),
  previewSession: (projectId, body) => send('POST', `/projects/${enc(projectId)}/preview-sessions`, body),
  // Billing (docs/billing.md): plans, this month's usage, Stripe Checkout and Portal.
  plans: () => send('GET', '/plans'),
  billingUsage: () => send('GET', '/billing/usage'),
  checkout: (plan, interval) => send('POST', '/billing/checkout', { plan, interval }),
  billingPortal: () => send('POST', '/billing/portal', {}),
  invoices: () => send('GET', '/billing/invoices'),

  // keepalive: the request may outlive the page (sent while it is being hidden or closed).
  analytics: (batch, keepalive = false) => send('POST', '/analytics/events', batch, { keepalive }),
  operatorScopes: () => send('GET', '/operator/scopes'),
  operatorSeries: (workspaceId, minutes, stepS) => {
    const query = new URLSearchParams({ minutes: String(minutes), step_s: String(stepS) })
    if (workspaceId) query.set('workspace_id', workspaceId)
    return send('GET', `/operator/series?${query}`)
  }
}

/** ws://host/path?token=... for a socket on this origin. */
export function socketUrl (path) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
  const session = getSession()
  const sep = path.includes('?') ? '&' : '?'
  return `${proto}//${location.host}${path}${session ? `${sep}token=${enc(session.access_token)}` : ''}`
}

export function socketBase () {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}`
}
