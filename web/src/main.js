// Entry point: sign in (or restore this tab's session), pick a project, show the IDE.
import { api } from './api.js'
import { renderAuth } from './auth.js'
import { Ide } from './ide.js'
import { chooseProject, setHashParam } from './projects.js'
import { getSession, loadSession, onSessionChange, setSession } from './session.js'
import { h } from './dom.js'
import { reportPageLoad } from './analytics.js'

const root = document.getElementById('app')
let ide = null

function showAuth () {
  if (ide) ide.destroy()
  ide = null
  renderAuth(root, () => showIde().catch(fatal))
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

reportPageLoad('ide')
if (loadSession()) showIde().catch(fatal)
else showAuth()
