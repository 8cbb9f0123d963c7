// The AI chat panel: one conversation at a time over /ws/conversations/{id}; every
// window watching the conversation sees the answer stream in, delta by delta.
import { track } from './analytics.js'
import { api } from './api.js'
import { h } from './dom.js'
import { JsonSocket } from './jsonsocket.js'

function messageId (msg) {
  return msg.message_id || (msg.message && msg.message.id) || msg.id || null
}

function deltaText (msg) {
  for (const key of ['delta', 'text', 'content', 'token']) if (typeof msg[key] === 'string') return msg[key]
  return ''
}

export class ChatPanel {
  constructor ({ root, projectId, context, onError, onConversation, onApply }) {
    this.root = root
    // "Apply to file": the last answer's code written into the open file by the assistant.
    this.onApply = onApply || null
    this.lastAnswer = null
    this.projectId = projectId
    this.context = context || (() => ({}))
    this.onError = onError || (() => {})
    this.onConversation = onConversation || (() => {})
    this.socket = null
    this.conversationId = null
    this.bubbles = new Map()
    this.select = h('select', { 'data-testid': 'conversation-select', onchange: () => this.open(this.select.value) })
    this.log = h('div', { class: 'chat-log', 'data-testid': 'chat-log' })
    this.input = h('textarea', { 'data-testid': 'chat-input', rows: 3, placeholder: 'Ask the assistant… (Enter to send, Shift+Enter for a new line)' })
    this.status = h('span', { class: 'muted', 'data-testid': 'chat-status' })
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault()
        this.send()
      }
    })
    root.replaceChildren(
      h('div', { class: 'row' }, [
        this.select,
        h('button', { 'data-testid': 'new-conversation', onclick: () => this.create().catch(this.onError) }, 'New chat')
      ]),
      this.log,
      this.input,
      h('div', { class: 'row' }, [
        h('button', { class: 'primary', 'data-testid': 'chat-send', onclick: () => this.send() }, 'Send'),
        h('button', { 'data-testid': 'chat-cancel', onclick: () => this.socket && this.socket.send({ type: 'cancel' }) }, 'Stop'),
        h('button', {
          class: 'writer-only',
          'data-testid': 'chat-apply',
          title: 'Write the last answer\'s code into the open file (the selection, else all of it)',
          onclick: () => this.lastAnswer && this.onApply && Promise.resolve(this.onApply(this.lastAnswer)).catch(this.onError)
        }, 'Apply to file'),
        this.status
      ])
    )
  }

  async load (preferredId) {
    let conversations = []
    try {
      conversations = await api.conversations(this.projectId)
    } catch (err) {
      this.onError(err)
    }
    const options = conversations.map((c) => ({ id: c.id, title: c.title || 'Untitled chat' }))
    if (preferredId && !options.some((c) => c.id === preferredId)) {
      // Someone else's conversation, opened from a shared link.
      let title = 'Shared chat'
      try {
        title = (await api.conversation(preferredId)).title || title
      } catch (err) {
        this.onError(err)
      }
      options.unshift({ id: preferredId, title })
    }
    this.renderOptions(options)
    const target = preferredId || (options[0] && options[0].id)
    if (target) this.open(target)
  }

  renderOptions (options) {
    this.options = options
    this.select.replaceChildren(...options.map((c) => h('option', { value: c.id }, c.title)))
  }

  async create () {
    const conversation = await api.createConversation(this.projectId, `Chat ${new Date().toLocaleTimeString()}`)
    this.renderOptions([{ id: conversation.id, title: conversation.title || 'Untitled chat' }, ...(this.options || [])])
    this.open(conversation.id)
    return conversation
  }

  async open (conversationId) {
    if (this.conversationId === conversationId) return
    if (this.socket) this.socket.close()
    this.conversationId = conversationId
    this.select.value = conversationId
    this.onConversation(conversationId)
    this.log.replaceChildren()
    this.bubbles.clear()
    try {
      const messages = await api.messages(conversationId)
      messages.sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)))
      for (const m of messages) this.bubble(m.id, m.role, m.content || '')
    } catch (err) {
      this.onError(err)
    }
    this.socket = new JsonSocket(`/ws/conversations/${encodeURIComponent(conversationId)}`, {
      onMessage: (msg) => this.receive(msg),
      onStatus: (status) => { this.root.dataset.socket = status }
    })
  }

  receive (msg) {
    switch (msg.type) {
      case 'message_created': {
        const m = msg.message || msg
        this.bubble(messageId(msg), m.role || 'assistant', m.content || '')
        if ((m.role || 'assistant') === 'assistant') this.status.textContent = 'thinking…'
        break
      }
      case 'delta': {
        const bubble = this.bubble(messageId(msg), 'assistant', '')
        bubble.textContent += deltaText(msg)
        bubble.dataset.deltas = String(Number(bubble.dataset.deltas || 0) + 1)
        this.log.scrollTop = this.log.scrollHeight
        this.status.textContent = 'answering…'
        break
      }
      case 'done': {
        const bubble = this.bubbles.get(messageId(msg))
        if (bubble) bubble.dataset.done = 'true'
        if (!msg.cancelled) this.lastAnswer = messageId(msg)
        const tokens = msg.tokens || msg.usage || {}
        const total = typeof tokens === 'number' ? tokens : (tokens.total || tokens.total_tokens || '')
        this.status.textContent = `done${msg.model ? ` · ${msg.model}` : ''}${total ? ` · ${total} tokens` : ''}`
        break
      }
      case 'tool_call': {
        // Each call the assistant makes is shown (and stored with its message).
        const call = msg.call || {}
        const line = h('div', { class: 'msg tool', 'data-testid': 'chat-tool', 'data-call-id': call.id || '' },
          `⚙ ${call.name}(${JSON.stringify(call.arguments || {})})`)
        this.log.append(line)
        this.status.textContent = `using ${call.name}…`
        break
      }
      case 'tool_result': {
        const line = this.log.querySelector(`[data-testid=chat-tool][data-call-id="${CSS.escape(msg.call_id || '')}"]`)
        if (line) {
          line.dataset.ok = String(Boolean(msg.ok))
          line.textContent += ` → ${msg.summary || (msg.ok ? 'done' : 'failed')}`
        }
        break
      }
      case 'error':
        this.status.textContent = `error: ${msg.message || msg.code}`
        this.bubble(null, 'error', msg.message || msg.code || 'error')
        break
      default:
        break
    }
  }

  bubble (id, role, content) {
    let bubble = id ? this.bubbles.get(id) : null
    if (!bubble) {
      bubble = h('div', { class: `msg ${role}`, 'data-testid': 'chat-message', 'data-role': role, 'data-message-id': id || '' }, content)
      if (id) this.bubbles.set(id, bubble)
      this.log.append(bubble)
      this.log.scrollTop = this.log.scrollHeight
    }
    return bubble
  }

  async send () {
    const content = this.input.value.trim()
    if (!content) return
    if (!this.conversationId) await this.create()
    this.socket.send({ type: 'user_message', content, context: this.context() })
    this.input.value = ''
    track('chat_asked', 'ai', { chars: content.length })
  }

  close () {
    if (this.socket) this.socket.close()
  }
}
