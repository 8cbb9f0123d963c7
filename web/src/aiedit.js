// The assistant's edits in an open file: its text arrives through the document's own socket
// (it is a peer with its own client id); here each edit becomes one undo step, so the page
// can offer accept / reject for the whole edit even after people typed elsewhere.
//
// The undo manager captures the transactions the provider applies for a client id the
// document's `assistant` map names (the server writes that entry in the edit's first
// transaction, the one that removes the range, so that one is captured too). Each
// assistant client gets its own stack item; rejecting undoes exactly its changes.
import * as Y from 'yjs'
import { h } from './dom.js'

export class AssistantEdits {
  constructor (doc, text, provider) {
    this.provider = provider
    this.markers = doc.getMap('assistant')
    this.lastClient = null
    this.items = new Map() // assistant client id -> its stack item
    this.undo = new Y.UndoManager(text, {
      trackedOrigins: new Set([provider]),
      captureTimeout: 2 ** 31,
      captureTransaction: (tr) => this.capture(tr)
    })
    this.undo.on('stack-item-added', ({ stackItem }) => {
      stackItem.meta.set('client', this.lastClient)
      this.items.set(this.lastClient, stackItem)
    })
    this.bar = h('div', { class: 'ai-review', 'data-testid': 'ai-review', hidden: true })
  }

  assistantClients () {
    const clients = new Set()
    for (const value of this.markers.values()) if (value && value.client) clients.add(value.client)
    return clients
  }

  capture (tr) {
    if (tr.origin !== this.provider) return false
    for (const client of this.assistantClients()) {
      if ((tr.afterState.get(client) || 0) > (tr.beforeState.get(client) || 0)) {
        if (client !== this.lastClient) {
          this.undo.stopCapturing() // another edit: a stack item of its own
          this.lastClient = client
        }
        return true
      }
    }
    return false
  }

  started (edit) {
    this.show(edit, `The assistant is editing (${edit.instruction || 'applying an answer'})…`, false)
  }

  /** An edit ended: offer accept / reject when it left text behind and this page saw it. */
  finished (edit) {
    const item = this.items.get(edit.client_id)
    if (!item || !['completed', 'kept'].includes(edit.outcome)) {
      this.bar.hidden = true
      return
    }
    this.show(edit, `Assistant edit ${edit.outcome}: ${edit.chars} characters.`, true)
  }

  show (edit, message, review) {
    this.bar.dataset.editId = edit.id
    this.bar.dataset.state = review ? 'review' : 'writing'
    const parts = [h('span', { class: 'ai-dot' }), h('span', { 'data-testid': 'ai-review-message' }, message)]
    if (review) {
      parts.push(
        h('button', { 'data-testid': 'ai-accept', onclick: () => this.accept(edit) }, 'Accept'),
        h('button', { 'data-testid': 'ai-reject', onclick: () => this.reject(edit) }, 'Reject')
      )
    }
    this.bar.replaceChildren(...parts)
    this.bar.hidden = false
  }

  accept (edit) {
    this.forget(edit.client_id)
    this.bar.dataset.state = 'accepted'
    this.bar.hidden = true
  }

  reject (edit) {
    const item = this.items.get(edit.client_id)
    const stack = this.undo.undoStack
    if (!item || stack[stack.length - 1] !== item) {
      this.bar.dataset.state = 'blocked'
      this.bar.querySelector('[data-testid=ai-review-message]').textContent = 'A later assistant edit came after this one: review that first.'
      return
    }
    this.undo.undo() // one step: everything the assistant wrote and removed
    this.undo.redoStack.length = 0
    this.items.delete(edit.client_id)
    this.bar.dataset.state = 'rejected'
    this.bar.hidden = true
  }

  forget (client) {
    const item = this.items.get(client)
    if (!item) return
    this.items.delete(client)
    const index = this.undo.undoStack.indexOf(item)
    if (index >= 0) this.undo.undoStack.splice(index, 1)
    if (!this.undo.undoStack.length) this.undo.clear()
  }

  destroy () {
    this.undo.destroy()
  }
}
