// Which project the page shows: #project=<id> in the address, else the first one the
// user can open, else a new workspace and project made for them.
import { api } from './api.js'

export function hashParams () {
  return new URLSearchParams(location.hash.replace(/^#/, ''))
}

export function setHashParam (key, value) {
  const params = hashParams()
  if (value) params.set(key, value)
  else params.delete(key)
  history.replaceState(null, '', `#${params.toString()}`)
}

/** Every project the user can open, as {project, workspace}. */
export async function listProjects () {
  const out = []
  for (const workspace of await api.workspaces()) {
    for (const project of await api.projects(workspace.id)) out.push({ project, workspace })
  }
  return out
}

export async function createStarterProject (user) {
  const who = (user.full_name || user.email || 'My').split('@')[0]
  const workspace = await api.createWorkspace(`${who}'s workspace`)
  const project = await api.createProject(workspace.id, 'hello')
  await api.createFile(project.id, { name: 'main.py', type: 'file', parent_id: null })
  return { project, workspace }
}

export async function chooseProject (user) {
  const wanted = hashParams().get('project')
  const projects = await listProjects()
  let chosen = projects.find((p) => p.project.id === wanted)
  if (!chosen && wanted) {
    try {
      const project = await api.project(wanted)
      chosen = { project, workspace: { id: project.workspace_id, name: '' } }
      projects.push(chosen)
    } catch {
      chosen = null
    }
  }
  if (!chosen) chosen = projects[0]
  if (!chosen) {
    chosen = await createStarterProject(user)
    projects.push(chosen)
  }
  setHashParam('project', chosen.project.id)
  return { chosen, projects }
}
