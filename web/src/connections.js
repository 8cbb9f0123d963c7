// "Sign in with ..." buttons and the connected-accounts list of the settings dialog.
// Tokens of the providers never reach the page: it sees names, scopes and a status only.
import { api } from './api.js'
import { h } from './dom.js'

const LABELS = {
  access_denied: 'You did not allow access.',
  email_unverified: 'That account\'s email address is not verified.',
  state_reused: 'That sign-in link was already used: start again.',
  state_expired: 'The sign-in took too long: start again.',
  state_mismatch: 'The sign-in was started in another browser: start again here.',
  identity_taken: 'That account is connected to another user.'
}

export function oauthErrorText (params) {
  const code = params.get('oauth_error')
  return LABELS[code] || params.get('message') || `Sign-in failed (${code}).`
}

/** Go to the provider: the page leaves, the provider sends the browser back to us. */
export async function goToProvider (provider, purpose) {
  const { authorization_url: url } = await api.startOAuth(provider, purpose)
  location.assign(url)
}

/** One button per offered provider (none when the server has no client ids). */
export function providerButtons (onError) {
  const box = h('div', { class: 'oauth-buttons', 'data-testid': 'oauth-buttons' })
  api.providers().then((providers) => {
    box.replaceChildren(...providers.map((p) => h('button', {
      type: 'button',
      'data-testid': `sign-in-${p.name}`,
      onclick: () => goToProvider(p.name, 'sign_in').catch(onError)
    }, `Sign in with ${p.display_name}`)))
  }).catch(onError)
  return box
}

/** The signed-in user's settings: connected accounts (connect, disconnect). */
export function settingsDialog (onError, onInfo) {
  const list = h('ul', { class: 'connections', 'data-testid': 'connections' })
  const dialog = h('div', { class: 'settings card', 'data-testid': 'settings', hidden: true }, [
    h('div', { class: 'row' }, [
      h('h1', {}, 'Settings'), h('span', { class: 'spacer' }),
      h('button', { 'data-testid': 'settings-close', onclick: () => { dialog.hidden = true } }, 'Close')
    ]),
    h('h2', {}, 'Connected accounts'),
    list
  ])
  const render = async () => {
    const { connections, providers } = await api.connections()
    const byName = new Map(connections.map((c) => [c.provider, c]))
    const names = new Map(providers.map((p) => [p.name, p.display_name]))
    for (const c of connections) if (!names.has(c.provider)) names.set(c.provider, c.provider)
    if (!names.size) {
      list.replaceChildren(h('li', { class: 'muted' }, 'No providers are configured on this server.'))
      return
    }
    list.replaceChildren(...[...names].map(([name, label]) => {
      const c = byName.get(name)
      const status = c
        ? `${label}: ${c.username || c.email || c.provider_user_id}${c.status === 'active' ? '' : ' (reconnect needed)'}`
        : `${label}: not connected`
      const action = c && c.status === 'active'
        ? h('button', {
          'data-testid': `disconnect-${name}`,
          onclick: () => api.disconnect(name).then((r) => {
            onInfo(r.revoked === false ? `${label} disconnected (the provider did not confirm the revocation)` : `${label} disconnected`)
            return render()
          }).catch(onError)
        }, 'Disconnect')
        : h('button', {
          'data-testid': `connect-${name}`,
          onclick: () => goToProvider(name, 'connect').catch(onError)
        }, c ? 'Reconnect' : 'Connect')
      return h('li', { 'data-testid': `connection-${name}`, 'data-connected': c ? 'true' : 'false' }, [
        h('span', { class: 'spacer' }, status), action
      ])
    }))
  }
  return {
    root: dialog,
    async open () {
      dialog.hidden = false
      await render()
    }
  }
}
