// Sign-in and sign-up forms.
import { api } from './api.js'
import { providerButtons } from './connections.js'
import { h } from './dom.js'

export function renderAuth (root, onSignedIn, notice = '') {
  let mode = 'sign-in'
  const error = h('p', { class: 'error', 'data-testid': 'auth-error', role: 'alert' })
  const name = h('input', { name: 'full_name', placeholder: 'Your name', autocomplete: 'name', 'data-testid': 'auth-name' })
  const email = h('input', { name: 'email', type: 'email', placeholder: 'Email', autocomplete: 'email', required: true, 'data-testid': 'auth-email' })
  const password = h('input', { name: 'password', type: 'password', placeholder: 'Password (8+ characters)', autocomplete: 'current-password', required: true, minlength: 8, 'data-testid': 'auth-password' })
  const submit = h('button', { class: 'primary', type: 'submit', 'data-testid': 'auth-submit' })
  const toggle = h('button', { type: 'button', class: 'link', 'data-testid': 'auth-toggle' })
  const title = h('h1')

  const render = () => {
    title.textContent = mode === 'sign-in' ? 'Sign in' : 'Create an account'
    name.hidden = mode === 'sign-in'
    submit.textContent = mode === 'sign-in' ? 'Sign in' : 'Sign up'
    toggle.textContent = mode === 'sign-in' ? 'No account? Sign up' : 'Have an account? Sign in'
    password.autocomplete = mode === 'sign-in' ? 'current-password' : 'new-password'
    error.textContent = ''
  }
  toggle.addEventListener('click', () => {
    mode = mode === 'sign-in' ? 'sign-up' : 'sign-in'
    render()
  })
  const showError = (err) => { error.textContent = err.message || String(err) }
  const form = h('form', { class: 'auth card', 'data-testid': 'auth-form', 'data-mode': mode }, [
    title, name, email, password, submit, error, toggle, providerButtons(showError)
  ])
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    submit.disabled = true
    error.textContent = ''
    try {
      const session = mode === 'sign-in'
        ? await api.signIn(email.value.trim(), password.value)
        : await api.signUp(email.value.trim(), password.value, name.value.trim() || undefined)
      onSignedIn(session)
    } catch (err) {
      error.textContent = err.message || String(err)
    } finally {
      submit.disabled = false
    }
  })
  render()
  error.textContent = notice
  root.replaceChildren(h('div', { class: 'auth-page' }, [
    h('div', { class: 'brand big' }, 'iCreateTechs'),
    form,
    h('p', { class: 'muted' }, 'Open this page in a second window, sign in as someone else, and edit together.')
  ]))
  email.focus()
}
