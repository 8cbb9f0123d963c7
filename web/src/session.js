// The signed-in user's tokens: kept in memory and in sessionStorage (this tab only,
// gone when the tab closes). Never localStorage, never cookies readable by other tabs.
const KEY = 'icreate.session'

let current = null
const listeners = new Set()

export function loadSession () {
  try {
    const raw = sessionStorage.getItem(KEY)
    current = raw ? JSON.parse(raw) : null
  } catch {
    current = null
  }
  return current
}

export function getSession () {
  return current
}

export function setSession (session) {
  current = session
  if (session) sessionStorage.setItem(KEY, JSON.stringify(session))
  else sessionStorage.removeItem(KEY)
  for (const listener of listeners) listener(session)
}

export function onSessionChange (listener) {
  listeners.add(listener)
  return () => listeners.delete(listener)
}

export function accessToken () {
  return current ? current.access_token : null
}
