// Entry point: sign in (or restore this tab's session), pick a project, show the IDE.
import { api } from './api.js'
import { renderAuth } from './auth.js'
import { oauthErrorText } from './connections.js'
import { Ide } from './ide.js'
import { chooseProject, setHashParam } from './projects.js'
import { getSession, loadSession, onSessionChange, setSession } from './session.js'
import { h } from './dom.js'
import { reportPageLoad } from './analytics.js'

const root = document.getElementById('app')
let ide = null

function showAuth (notice = '') {
  if (ide) ide.destroy()
  ide = null
  renderAuth(root, () => showIde().catch(fatal), notice)
}

function fatal (err) {
  console.error(err)
  root.replaceChildren(h('div', { class: 'auth-page' }, [
    h('p', { class: 'error', 'data-testid': 'fatal' }, err && err.message ? err.message : String(err)),
    h('button', { onclick: () => location.reload() }, 'Reload'),
    h('button', { onclick: () => { setSession(null); showAuth() } }, 'Sign out')
  ]))
}

async function showIde () {
  let session = getSession()
  if (!session.user) {
    setSession({ ...session, user: await api.me() })
    session = getSession()
  }
  const { chosen, projects } = await chooseProject(session.user)
  if (ide) ide.destroy()
  ide = new Ide({
    root,
    user: session.user,
    project: { ...chosen.project, workspace_id: chosen.project.workspace_id || chosen.workspace.id },
    projects,
    onSignOut: () => api.signOut().finally(showAuth),
    onSwitch: (projectId) => {
      setHashParam('conversation', null)
      setHashParam('project', projectId)
      showIde().catch(fatal)
    }
  })
  await ide.start()
}

onSessionChange((session) => {
  if (!session && ide) showAuth()
})

// Back from a provider: #oauth=<one-time code> (sign-in), #oauth_connected=<provider> or
// #oauth_error=<code>. The code is taken out of the address before anything else runs.
async function start () {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''))
  const keys = ['oauth', 'oauth_connected', 'oauth_error', 'provider', 'message', 'detail']
  if (keys.some((k) => params.has(k))) history.replaceState(null, '', location.pathname)
  if (params.has('oauth')) {
    try {
      await api.exchangeOAuth(params.get('oauth'))
    } catch (err) {
      showAuth(err.message || String(err))
      return
    }
    await showIde()
    return
  }
  if (params.has('oauth_error')) {
    if (loadSession()) {
      await showIde()
      ide.error(new Error(oauthErrorText(params)))
    } else {
      showAuth(oauthErrorText(params))
    }
    return
  }
  if (!loadSession()) {
    showAuth()
    return
  }
  await showIde()
  if (params.has('oauth_connected')) {
    ide.info(`${params.get('oauth_connected')} connected`)
    await ide.openSettings()
  }
}

reportPageLoad('ide')
start().catch(fatal)
