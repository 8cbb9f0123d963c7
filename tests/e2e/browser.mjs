// Playwright driver for the end-to-end tests: `node browser.mjs <scenario>` with a JSON
// config on stdin; prints one JSON result line on stdout, logs on stderr, screenshots into
// config.artifacts. Each window is its own browser context (own sessionStorage) signed in
// through the page's own form, as a person would.
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(fileURLToPath(new URL('../../web/package.json', import.meta.url)))
const { chromium } = require('playwright-core')

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage']
// Generous: CI machines are small and shared (2 cores); a healthy run takes a fraction.
const STEP_MS = 30000
const LOAD_MS = 60000

function log (...parts) {
  process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${parts.join(' ')}\n`)
}

async function readConfig () {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString())
}

class Window {
  constructor (browser, config, user, label) {
    this.browser = browser
    this.config = config
    this.user = user
    this.label = label
    this.problems = []
    this.shots = 0
  }

  async open (hash) {
    this.context = await this.browser.newContext({ viewport: { width: 1280, height: 800 } })
    this.page = await this.context.newPage()
    this.page.setDefaultTimeout(STEP_MS)
    this.page.setDefaultNavigationTimeout(LOAD_MS)
    this.page.on('console', (msg) => {
      const text = msg.text()
      if (msg.type() === 'error' || /Content.Security.Policy/i.test(text)) this.problems.push(`console ${msg.type()}: ${text}`)
      log(this.label, 'console', msg.type(), text)
    })
    this.page.on('pageerror', (err) => this.problems.push(`pageerror: ${err.message}`))
    await this.page.goto(`${this.config.url}/#${hash}`)
    log(this.label, 'page loaded')
    if (this.user.github) await this.signInWithGithub()
    else await this.signIn()
    return this
  }

  /** Through the (fake) GitHub: the browser goes to the provider and back. */
  async signInWithGithub () {
    const page = this.page
    await page.getByTestId('sign-in-github').click()
    await page.getByTestId('ide').waitFor()
    await this.waitFor(() => document.querySelector('[data-testid=ide]').parentElement.dataset.channel === 'joined', null, 'project channel joined')
    log(this.label, 'signed in with GitHub')
  }

  async signIn () {
    const page = this.page
    await page.getByTestId('auth-email').fill(this.user.email)
    await page.getByTestId('auth-password').fill(this.user.password)
    await page.getByTestId('auth-submit').click()
    await page.getByTestId('ide').waitFor()
    log(this.label, 'ide shown')
    // Joined: the project channel is subscribed and the tree listed after that.
    await this.waitFor(() => document.querySelector('[data-testid=ide]').parentElement.dataset.channel === 'joined', null, 'project channel joined')
    log(this.label, 'signed in as', this.user.email)
  }

  async shot (name) {
    const path = join(this.config.artifacts, `${String(++this.shots).padStart(2, '0')}-${this.label}-${name}.png`)
    await this.page.screenshot({ path })
    return path
  }

  async waitFor (fn, arg, what, timeout = STEP_MS) {
    try {
      await this.page.waitForFunction(fn, arg, { timeout, polling: 50 })
    } catch (err) {
      await this.shot(`timeout-${what.replace(/\W+/g, '-')}`).catch(() => {})
      const state = await this.page.evaluate(() => JSON.stringify({
        app: { ...document.getElementById('app').dataset },
        chat: { ...(document.querySelector('[data-testid=chat]') || { dataset: {} }).dataset },
        terminal: { ...(document.querySelector('[data-testid=terminal]') || { dataset: {} }).dataset }
      })).catch(() => '?')
      throw new Error(`${this.label}: timed out waiting for ${what} (page state ${state}; ${err.message.split('\n')[0]})`)
    }
  }

  treeItem (name) {
    return this.page.locator('[data-testid=tree-item]', { has: this.page.locator('[data-testid=tree-name]', { hasText: new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }) })
  }

  async openFile (name) {
    await this.treeItem(name).click()
    await this.waitFor((n) => {
      const tab = [...document.querySelectorAll('[data-testid=tab]')].find((t) => t.textContent.includes(n))
      return tab && tab.classList.contains('active') && tab.dataset.status === 'synced'
    }, name, `${name} open and synced`)
  }

  /** The active editor's document text, without the remote-cursor widgets. */
  editorText () {
    return this.page.evaluate(editorTextInPage)
  }

  async waitForText (needle) {
    await this.waitFor((n) => {
      const pane = document.querySelector('.editor-pane:not([hidden]) .cm-content')
      if (!pane) return false
      const copy = pane.cloneNode(true)
      for (const w of copy.querySelectorAll('.cm-ySelectionCaret, .cm-widgetBuffer')) w.remove()
      return [...copy.querySelectorAll('.cm-line')].map((l) => l.textContent).join('\n').includes(n)
    }, needle, `editor text ${JSON.stringify(needle)}`)
  }

  async typeAtEnd (text) {
    await this.page.locator('.editor-pane:not([hidden]) .cm-content').click()
    await this.page.keyboard.press('Control+End')
    await this.page.keyboard.type(text, { delay: 15 })
  }

  async close () {
    if (this.context) await this.context.close()
  }
}

// Runs `fn` in the preview frame. The preview reloads after every saved edit, so a reload
// from a late keystroke can destroy the page under the call: run it again on the new page.
async function inPreviewFrame (page, fn, arg) {
  for (let attempt = 1; ; attempt++) {
    const frame = page.frames().find((f) => f !== page.mainFrame() && f.url().startsWith('http'))
    try {
      await frame.waitForLoadState('load')
      return await frame.evaluate(fn, arg)
    } catch (e) {
      if (attempt >= 5 || !/Execution context was destroyed|Frame was detached/.test(String(e))) throw e
      log('preview frame reloaded under the probe; again')
      await page.waitForTimeout(300)
    }
  }
}

function editorTextInPage () {
  const pane = document.querySelector('.editor-pane:not([hidden]) .cm-content')
  if (!pane) return null
  const copy = pane.cloneNode(true)
  for (const w of copy.querySelectorAll('.cm-ySelectionCaret, .cm-widgetBuffer')) w.remove()
  return [...copy.querySelectorAll('.cm-line')].map((l) => l.textContent).join('\n')
}

function editorTextIncludes (needle) {
  const pane = document.querySelector('.editor-pane:not([hidden]) .cm-content')
  if (!pane) return false
  const copy = pane.cloneNode(true)
  for (const w of copy.querySelectorAll('.cm-ySelectionCaret, .cm-widgetBuffer')) w.remove()
  return [...copy.querySelectorAll('.cm-line')].map((l) => l.textContent).join('\n').includes(needle)
}

function remoteCursorNames () {
  return [...document.querySelectorAll('.editor-pane:not([hidden]) .cm-ySelectionInfo')].map((el) => el.textContent)
}

async function twoWindows (browser, config, hash) {
  const [a, b] = config.users
  return Promise.all([
    new Window(browser, config, a, 'alice').open(hash),
    new Window(browser, config, b, 'bob').open(hash)
  ])
}

const scenarios = {
  // The operator page of a service operator: the whole service, then one workspace, plotted.
  async operator (browser, config) {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1100 } })
    const page = await context.newPage()
    page.setDefaultTimeout(STEP_MS)
    const problems = []
    page.on('console', (msg) => {
      if (msg.type() === 'error' || /Content.Security.Policy/i.test(msg.text())) problems.push(`console ${msg.type()}: ${msg.text()}`)
      log('operator console', msg.type(), msg.text())
    })
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`))
    await page.goto(`${config.url}/operator.html`)
    await page.getByTestId('auth-email').fill(config.user.email)
    await page.getByTestId('auth-password').fill(config.user.password)
    await page.getByTestId('auth-submit').click()
    await page.waitForSelector('[data-testid=operator][data-loaded="service:60"]')
    // The last minute, a point per second: the test's few seconds of traffic as lines.
    await page.getByTestId('operator-window').selectOption({ label: 'last minute, per second' })
    await page.waitForSelector('[data-testid=operator][data-loaded="service:1"]')
    const panels = () => page.locator('[data-testid=operator-panel]').evaluateAll((els) => els.map((el) => ({
      id: el.dataset.panel,
      canvas: Boolean(el.querySelector('.uplot canvas')),
      legend: [...el.querySelectorAll('.u-legend .u-series .u-label')].map((l) => l.textContent)
    })))
    const service = await panels()
    const screenshot = join(config.artifacts, '01-operator-service.png')
    await page.screenshot({ path: screenshot, fullPage: true })
    await page.getByTestId('operator-scope').selectOption(config.workspace_id)
    await page.waitForSelector('[data-testid=operator][data-loaded="workspace:1"]')
    const workspace = await panels()
    await page.screenshot({ path: join(config.artifacts, '02-operator-workspace.png'), fullPage: true })
    await context.close()
    return { service, workspace, screenshot, problems }
  },

  // Sign in with the (fake) GitHub from the sign-in page; disconnect and connect it again
  // from the settings. The browser really goes to the provider and back.
  async oauth (browser, config) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
    const page = await context.newPage()
    page.setDefaultTimeout(STEP_MS)
    const problems = []
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`))
    page.on('console', (msg) => { if (/Content.Security.Policy/i.test(msg.text())) problems.push(msg.text()) })
    const shot = (name) => page.screenshot({ path: join(config.artifacts, `${name}.png`) })
    await page.goto(`${config.url}/`)
    await page.getByTestId('sign-in-github').waitFor()
    await shot('00-sign-in-page')
    await page.getByTestId('sign-in-github').click()
    await page.getByTestId('ide').waitFor()
    await shot('01-signed-in')
    const user = await page.getByTestId('current-user').textContent()
    const hashAfterSignIn = await page.evaluate(() => location.hash)
    await page.getByTestId('open-settings').click()
    const row = page.getByTestId('connection-github')
    await page.locator('[data-testid=connection-github][data-connected=true]').waitFor()
    const listed = await row.textContent()
    await shot('02-settings')
    await page.getByTestId('disconnect-github').click()
    await page.locator('[data-testid=connection-github][data-connected=false]').waitFor()
    await shot('03-disconnected')
    await page.getByTestId('connect-github').click()
    await page.getByTestId('ide').waitFor()
    await page.locator('[data-testid=connection-github][data-connected=true]').waitFor()
    await shot('04-connected-again')
    const result = {
      user,
      hash_after_sign_in: hashAfterSignIn,
      listed,
      storage: await page.evaluate(() => ({ local: Object.keys(localStorage), session: Object.keys(sessionStorage) })),
      problems
    }
    await context.close()
    return result
  },

  // Alice signs in with the (fake) GitHub, imports a repository picked from her account,
  // both edit the imported file, Alice commits and pushes.
  async gitflow (browser, config) {
    const [aliceUser, bobUser] = config.users
    const alice = await new Window(browser, config, aliceUser, 'alice').open(`project=${config.project_id}`)
    await alice.page.getByTestId('panel-git').click()
    await alice.page.getByTestId('git-list-github').click()
    await alice.page.locator(`[data-testid=git-account-repo][data-full-name="${config.repo}"]`).click()
    await alice.treeItem(config.file_name).waitFor({ timeout: LOAD_MS })
    await alice.shot('imported')
    const bob = await new Window(browser, config, bobUser, 'bob').open(`project=${config.project_id}`)
    await bob.treeItem(config.file_name).waitFor()
    await Promise.all([alice.openFile(config.file_name), bob.openFile(config.file_name)])
    await alice.typeAtEnd('alice line\n')
    await bob.waitForText('alice line')
    await bob.typeAtEnd('bob line\n')
    await alice.waitForText('bob line')
    await bob.shot('both-edited')
    await alice.page.getByTestId('git-message').fill(config.message)
    await alice.page.getByTestId('git-push').click()
    await alice.waitFor(() => !!document.querySelector('[data-testid=git]').dataset.pushed, null, 'pushed', LOAD_MS)
    await alice.shot('pushed')
    const result = {
      pushed: await alice.page.evaluate(() => document.querySelector('[data-testid=git]').dataset.pushed),
      status: await alice.page.getByTestId('git-status').textContent(),
      alice_text: await alice.editorText(),
      problems: [...alice.problems, ...bob.problems]
    }
    await alice.close()
    await bob.close()
    return result
  },

  // Both type into the same file and see each other's text and cursor.
  async coedit (browser, config) {
    const [alice, bob] = await twoWindows(browser, config, `project=${config.project_id}`)
    await Promise.all([alice.openFile(config.file_name), bob.openFile(config.file_name)])
    await alice.shot('opened')
    await alice.typeAtEnd('\nalice was here')
    await bob.waitForText('alice was here')
    await bob.typeAtEnd('\nbob was here too')
    await alice.waitForText('bob was here too')
    const seesCursorOf = (name) => [...document.querySelectorAll('.editor-pane:not([hidden]) .cm-ySelectionInfo')].some((el) => el.textContent.includes(name))
    await alice.waitFor(seesCursorOf, config.users[1].name, 'bob\'s cursor in alice\'s editor')
    await bob.waitFor(seesCursorOf, config.users[0].name, 'alice\'s cursor in bob\'s editor')
    // Bob selects his line: Alice sees the selection highlighted in Bob's colour.
    await bob.page.keyboard.press('Shift+Home')
    await alice.waitFor(() => document.querySelector('.editor-pane:not([hidden]) .cm-ySelection') !== null, null, 'bob\'s selection in alice\'s editor')
    await alice.shot('both-typed')
    await bob.shot('both-typed')
    return {
      alice_text: await alice.editorText(),
      bob_text: await bob.editorText(),
      alice_sees_cursors: await alice.page.evaluate(remoteCursorNames),
      bob_sees_cursors: await bob.page.evaluate(remoteCursorNames),
      alice_sees_selection: await alice.page.locator('.editor-pane:not([hidden]) .cm-ySelection').allTextContents(),
      problems: [...alice.problems, ...bob.problems]
    }
  },

  // Alice asks the assistant to rewrite two lines; it writes into both editors with its own
  // cursor while Bob types at the end; after the edit Bob types again elsewhere, then
  // Alice rejects the whole edit in one step: both editors show the original lines and
  // every character Bob typed.
  async aiedit (browser, config) {
    const [alice, bob] = await twoWindows(browser, config, `project=${config.project_id}`)
    await Promise.all([alice.openFile(config.file_name), bob.openFile(config.file_name)])
    const content = alice.page.locator('.editor-pane:not([hidden]) .cm-content')
    await content.click()
    await alice.page.keyboard.press('Control+Home')
    await alice.page.keyboard.press('Shift+ArrowDown')
    await alice.page.keyboard.press('Shift+ArrowDown')
    await alice.page.getByTestId('ai-edit-input').fill(config.instruction)
    await alice.page.getByTestId('ai-edit-run').click()
    const sees = (w, n) => w.waitFor(editorTextIncludes, n, `editor text ${n}`)
    await sees(bob, config.first_piece)
    await bob.typeAtEnd(config.bob_during)
    const seesAssistant = (w) => w.waitFor(() => [...document.querySelectorAll('.editor-pane:not([hidden]) .cm-ySelectionInfo')].some((el) => el.textContent.includes('Assistant')), null, 'the Assistant cursor')
    await seesAssistant(bob)
    await bob.shot('assistant-writing')
    const reviewing = (w) => w.waitFor(() => document.querySelector('.editor-pane:not([hidden]) [data-testid=ai-review]').dataset.state === 'review', null, 'review offered')
    await Promise.all([reviewing(alice), reviewing(bob)])
    await sees(alice, config.bob_during)
    const afterEdit = await alice.editorText()
    await bob.typeAtEnd(config.bob_after)
    await sees(alice, config.bob_after)
    await alice.shot('review')
    await alice.page.locator('.editor-pane:not([hidden])').getByTestId('ai-reject').click()
    const restored = (w) => w.waitFor((gone) => {
      const pane = document.querySelector('.editor-pane:not([hidden]) .cm-content')
      const copy = pane.cloneNode(true)
      for (const el of copy.querySelectorAll('.cm-ySelectionCaret, .cm-widgetBuffer')) el.remove()
      const text = [...copy.querySelectorAll('.cm-line')].map((l) => l.textContent).join('\n')
      return !text.includes(gone) && text.includes('line one')
    }, config.first_piece, 'edit rejected')
    await Promise.all([restored(alice), restored(bob)])
    await alice.shot('rejected')
    await bob.shot('rejected')
    return {
      after_edit: afterEdit,
      alice_text: await alice.editorText(),
      bob_text: await bob.editorText(),
      alice_bar: await alice.page.locator('.editor-pane:not([hidden]) [data-testid=ai-review]').getAttribute('data-state'),
      problems: [...alice.problems, ...bob.problems]
    }
  },

  // Alice asks for a security analysis: both editors show the findings as annotations.
  async analysis (browser, config) {
    const [alice, bob] = await twoWindows(browser, config, `project=${config.project_id}`)
    await Promise.all([alice.openFile(config.file_name), bob.openFile(config.file_name)])
    await alice.page.getByTestId('analysis-type').selectOption('security')
    await alice.page.getByTestId('analyse').click()
    const annotated = (w) => w.waitFor(() => Number(document.querySelector('.editor-pane:not([hidden])').dataset.annotations || 0) > 0, null, 'annotations', 60000)
    await Promise.all([annotated(alice), annotated(bob)])
    await alice.shot('annotated')
    const marks = (w) => w.page.evaluate(() => ({
      count: Number(document.querySelector('.editor-pane:not([hidden])').dataset.annotations),
      ranges: document.querySelectorAll('.editor-pane:not([hidden]) .cm-lintRange').length,
      gutter: document.querySelectorAll('.editor-pane:not([hidden]) .cm-lint-marker').length
    }))
    return { alice: await marks(alice), bob: await marks(bob), problems: [...alice.problems, ...bob.problems] }
  },

  // One creates, renames and deletes a file; the other's tree follows live.
  async tree (browser, config) {
    const [alice, bob] = await twoWindows(browser, config, `project=${config.project_id}`)
    await alice.page.getByTestId('new-file-name').fill('notes.md')
    await alice.page.getByTestId('new-file').click()
    await bob.treeItem('notes.md').waitFor()
    await bob.shot('sees-created')
    const created = await bob.treeItem('notes.md').count()
    const item = alice.treeItem('notes.md')
    await item.hover()
    await item.getByTestId('rename').click()
    await alice.page.getByTestId('rename-input').fill('ideas.md')
    await alice.page.getByTestId('rename-input').press('Enter')
    await bob.treeItem('ideas.md').waitFor()
    await bob.treeItem('notes.md').waitFor({ state: 'detached' })
    await bob.shot('sees-renamed')
    alice.page.once('dialog', (dialog) => dialog.accept())
    const renamed = alice.treeItem('ideas.md')
    await renamed.hover()
    await renamed.getByTestId('delete').click()
    await bob.treeItem('ideas.md').waitFor({ state: 'detached' })
    await bob.shot('sees-deleted')
    return {
      created,
      bob_tree: await bob.page.locator('[data-testid=tree-name]').allTextContents(),
      problems: [...alice.problems, ...bob.problems]
    }
  },

  // The assistant's answer streams into both windows, piece by piece.
  async chat (browser, config) {
    const hash = `project=${config.project_id}&conversation=${config.conversation_id}`
    const [alice, bob] = await twoWindows(browser, config, hash)
    const watch = () => {
      // Every distinct text the assistant bubble shows, as it grows.
      window.__seen = []
      const log = document.querySelector('[data-testid=chat-log]')
      new MutationObserver(() => {
        const bubble = [...log.querySelectorAll('[data-role=assistant]')].pop()
        if (bubble && window.__seen[window.__seen.length - 1] !== bubble.textContent) window.__seen.push(bubble.textContent)
      }).observe(log, { childList: true, subtree: true, characterData: true })
    }
    await Promise.all([alice.page.evaluate(watch), bob.page.evaluate(watch)])
    await Promise.all([alice, bob].map((w) => w.waitFor(() => document.querySelector('[data-testid=chat]').dataset.socket === 'open', null, 'chat socket open')))
    await alice.page.getByTestId('chat-input').fill(config.question)
    await alice.page.getByTestId('chat-send').click()
    await alice.waitFor(() => window.__seen.length >= 2, null, 'first deltas at alice')
    await alice.shot('streaming')
    await bob.shot('streaming')
    const done = (w) => w.waitFor(() => {
      const bubble = [...document.querySelectorAll('[data-testid=chat-log] [data-role=assistant]')].pop()
      return bubble && bubble.dataset.done === 'true'
    }, null, 'answer done')
    await Promise.all([done(alice), done(bob)])
    await alice.shot('answered')
    await bob.shot('answered')
    const result = async (w) => ({
      seen: await w.page.evaluate(() => window.__seen),
      messages: await w.page.locator('[data-testid=chat-message]').evaluateAll((els) => els.map((e) => ({ role: e.dataset.role, text: e.textContent }))),
      status: await w.page.getByTestId('chat-status').textContent()
    })
    return { alice: await result(alice), bob: await result(bob), problems: [...alice.problems, ...bob.problems] }
  },

  // One runs `echo` in the shared terminal; both see the output.
  async terminal (browser, config) {
    const [alice, bob] = await twoWindows(browser, config, `project=${config.project_id}`)
    const ready = (w) => w.waitFor(() => document.querySelector('[data-testid=terminal]').dataset.status === 'open', null, 'terminal open')
    await Promise.all([ready(alice), ready(bob)])
    await alice.page.locator('[data-testid=terminal] .xterm').click()
    await alice.page.keyboard.type(`${config.command}\n`, { delay: 10 })
    const sees = (w) => w.waitFor((n) => document.querySelector('[data-testid=terminal] .xterm-rows').textContent.includes(n), config.expect, `terminal shows ${config.expect}`)
    await Promise.all([sees(alice), sees(bob)])
    await alice.shot('echo')
    await bob.shot('echo')
    const rows = (w) => w.page.locator('[data-testid=terminal] .xterm-rows').evaluate((el) => [...el.children].map((r) => r.textContent).join('\n'))
    return { alice: await rows(alice), bob: await rows(bob), problems: [...alice.problems, ...bob.problems] }
  },

  // Save a version, edit, restore it: both editors go back to the saved text.
  async versions (browser, config) {
    const [alice, bob] = await twoWindows(browser, config, `project=${config.project_id}`)
    await Promise.all([alice.openFile(config.file_name), bob.openFile(config.file_name)])
    await alice.page.getByTestId('panel-versions').click()
    await alice.page.getByTestId('version-message').fill('first draft')
    await alice.page.getByTestId('save-version').click()
    const saved = alice.page.locator('[data-testid=version]', { hasText: 'first draft' })
    await saved.waitFor()
    await alice.typeAtEnd('\nan edit to undo')
    await bob.waitForText('an edit to undo')
    await alice.shot('saved-and-edited')
    await saved.getByTestId('restore-version').click()
    const restored = (w) => w.waitFor((gone) => {
      const pane = document.querySelector('.editor-pane:not([hidden]) .cm-content')
      return pane && !pane.textContent.includes(gone)
    }, 'an edit to undo', 'restored text')
    await Promise.all([restored(alice), restored(bob)])
    await alice.page.locator('[data-testid=version]').nth(1).waitFor()
    await alice.shot('restored')
    await bob.shot('restored')
    return {
      alice_text: await alice.editorText(),
      bob_text: await bob.editorText(),
      versions: await alice.page.locator('[data-testid=version]').allTextContents(),
      problems: [...alice.problems, ...bob.problems]
    }
  },

  // A viewer reads along live but cannot change anything.
  async viewer (browser, config) {
    const [alice, bob] = await twoWindows(browser, config, `project=${config.project_id}`)
    await Promise.all([alice.openFile(config.file_name), bob.openFile(config.file_name)])
    await bob.waitFor(() => document.getElementById('app').dataset.role === 'viewer', null, 'viewer role')
    await alice.typeAtEnd('\nwritten by the owner')
    await bob.waitForText('written by the owner')
    await bob.page.locator('.editor-pane:not([hidden]) .cm-content').click()
    await bob.page.keyboard.type('viewer typing', { delay: 10 })
    await bob.shot('read-only')
    return {
      alice_text: await alice.editorText(),
      bob_text: await bob.editorText(),
      bob_readonly: await bob.page.locator('.editor-pane:not([hidden]) .cm-content').getAttribute('aria-readonly'),
      bob_run_visible: await bob.page.getByTestId('run').isVisible(),
      bob_new_file_visible: await bob.page.getByTestId('new-file').isVisible(),
      bob_rename_buttons: await bob.page.getByTestId('rename').count(),
      problems: [...alice.problems, ...bob.problems]
    }
  },

  // Open files come back after a reload.
  async reload (browser, config) {
    const alice = await new Window(browser, config, config.users[0], 'alice').open(`project=${config.project_id}`)
    for (const name of config.file_names) await alice.openFile(name)
    await alice.openFile(config.file_names[0])
    const tabs = () => alice.page.locator('[data-testid=tab] .tab-name').allTextContents()
    const before = await tabs()
    await alice.shot('before-reload')
    // Wait until the (debounced) editor state naming every open tab went out, then reload.
    await alice.waitFor(() => {
      const tabs = [...document.querySelectorAll('[data-testid=tab]')]
      const active = document.querySelector('[data-testid=tab].active')
      const expected = `${tabs.map((t) => t.dataset.fileId).join(',')}|${active ? active.dataset.fileId : ''}`
      return document.getElementById('app').dataset.editorStateSent === expected
    }, null, 'editor state sent')
    await alice.page.reload()
    await alice.page.getByTestId('ide').waitFor()
    await alice.waitFor((n) => document.querySelectorAll('[data-testid=tab]').length === n, before.length, 'tabs restored')
    await alice.waitFor(() => document.querySelector('[data-testid=tab].active') !== null, null, 'an active tab')
    await alice.shot('after-reload')
    return {
      before,
      after: await tabs(),
      active: await alice.page.locator('[data-testid=tab].active .tab-name').textContent(),
      restored_from: await alice.page.evaluate(() => document.getElementById('app').dataset.restoredFrom),
      problems: alice.problems
    }
  },

  // Run the active file; the output appears.
  async run (browser, config) {
    const [alice, bob] = await twoWindows(browser, config, `project=${config.project_id}`)
    await alice.openFile(config.file_name)
    await alice.page.getByTestId('run').click()
    const sees = (w) => w.waitFor((n) => document.querySelector('[data-testid=run-output]').textContent.includes(n), config.expect, `run output ${config.expect}`, 30000)
    await sees(alice)
    await bob.page.getByTestId('panel-output').click()
    await sees(bob)
    await alice.shot('ran')
    await bob.shot('ran')
    return {
      alice: await alice.page.getByTestId('run-output').textContent(),
      bob: await bob.page.getByTestId('run-output').textContent(),
      status: await alice.page.getByTestId('run-status').textContent(),
      problems: [...alice.problems, ...bob.problems]
    }
  },

  // Everything at once, for the README's screenshot (not a test).
  async tour (browser, config) {
    const [alice, bob] = await twoWindows(browser, config, `project=${config.project_id}&conversation=${config.conversation_id}`)
    for (const w of [alice, bob]) await w.page.setViewportSize({ width: 1360, height: 820 })
    await Promise.all([alice.openFile(config.file_name), bob.openFile(config.file_name)])
    await bob.typeAtEnd(config.bob_types)
    await alice.waitForText(config.bob_types.trim())
    await bob.page.keyboard.press('Shift+Home')
    await alice.page.getByTestId('chat-input').fill(config.question)
    await alice.page.getByTestId('chat-send').click()
    await alice.waitFor(() => {
      const bubble = [...document.querySelectorAll('[data-testid=chat-log] [data-role=assistant]')].pop()
      return bubble && bubble.dataset.done === 'true'
    }, null, 'answer done')
    await alice.waitFor(() => document.querySelector('[data-testid=terminal]').dataset.status === 'open', null, 'terminal open')
    await alice.page.locator('[data-testid=terminal] .xterm').click()
    await alice.page.keyboard.type(`${config.command}\n`, { delay: 10 })
    await alice.waitFor((n) => document.querySelector('[data-testid=terminal] .xterm-rows').textContent.includes(n), config.expect, 'terminal output')
    await alice.page.locator('.editor-pane:not([hidden]) .cm-content').click()
    await alice.page.keyboard.press('Control+Home')
    await bob.waitFor(() => document.querySelector('.editor-pane:not([hidden]) .cm-ySelectionCaret') !== null, null, 'alice cursor at bob')
    await alice.page.waitForTimeout(300)
    const path = await alice.shot('tour')
    return { screenshot: path, problems: [...alice.problems, ...bob.problems] }
  },

  // The live preview pane: deploy, the frame shows index.html, an edit typed in the editor
  // shows in the frame, and the app in the frame cannot read the IDE's tokens.
  async preview (browser, config) {
    const w = await new Window(browser, config, config.user, 'alice').open(`project=${config.project_id}`)
    await w.openFile('index.html')
    await w.page.getByTestId('panel-preview').click()
    await w.page.getByTestId('preview-deploy').click()
    await w.waitFor(() => document.querySelector('[data-testid=preview]').dataset.status === 'success', null, 'deployment success', 90000)
    await w.waitFor(() => document.querySelector('[data-testid=preview-frame]').src !== '', null, 'frame source')
    log('alice', 'preview frame', await w.page.getByTestId('preview-frame').getAttribute('src'))
    const frame = w.page.frameLocator('[data-testid=preview-frame]')
    await frame.locator('h1', { hasText: config.before }).waitFor({ timeout: 90000 })
    await w.shot('deployed')
    const started = Date.now()
    await w.typeAtEnd(config.typed)
    const typedMs = Date.now() - started
    await frame.locator('body', { hasText: config.expect }).waitFor({ timeout: 30000 })
    const latencyMs = Date.now() - started
    log('alice', `edit shown in the preview after ${latencyMs} ms (typing took ${typedMs} ms)`)
    await w.shot('edited')
    // The probe below is refused on purpose (CORS): its console errors are not problems.
    const problemsBefore = w.problems.length
    const seen = await inPreviewFrame(w.page, async (ide) => {
      const keys = (name) => { try { return Object.keys(window[name]) } catch (e) { return e.name } }
      const out = { origin: location.origin, cookie: document.cookie, session: keys('sessionStorage'), local: keys('localStorage') }
      try { out.parent = Object.keys(window.parent.sessionStorage) } catch (e) { out.parent = e.name }
      try {
        const r = await fetch(ide + '/api/v1/me', { credentials: 'include' })
        out.fetch = `status ${r.status}`
      } catch (e) { out.fetch = 'blocked' }
      return out
    }, config.url)
    const ideKeys = await w.page.evaluate(() => Object.keys(sessionStorage))
    return { latency_ms: latencyMs, typing_ms: typedMs, seen, ide_session_keys: ideKeys, problems: w.problems.slice(0, problemsBefore), probe_console: w.problems.slice(problemsBefore) }
  },

  // Billing: the owner (alice) sees the usage of her workspace in the plan panel; bob, a
  // member, creates a project in it (the owner pays: her bar moves); alice upgrades through
  // the (fake) Stripe Checkout and comes back to the pro plan's limits.
  async billing (browser, config) {
    const [alice, bob] = await twoWindows(browser, config, `project=${config.project_id}`)
    const bars = (w) => w.page.locator('[data-testid=usage-bar]').evaluateAll((els) => Object.fromEntries(
      els.map((el) => [el.dataset.resource, { used: Number(el.dataset.used), limit: el.dataset.limit ? Number(el.dataset.limit) : null, ratio: Number(el.dataset.ratio), width: el.querySelector('.usage-fill').getBoundingClientRect().width }])))
    const openPlan = async (w) => {
      const before = await w.page.evaluate(() => document.querySelector('[data-testid=plan]').dataset.loaded || '')
      await w.page.getByTestId('panel-plan').click()
      await w.waitFor((b) => (document.querySelector('[data-testid=plan]').dataset.loaded || '') !== b, before, 'plan panel loaded')
    }
    await openPlan(alice)
    const free = await bars(alice)
    const freePlan = await alice.page.getByTestId('plan-name').textContent()
    await alice.shot('free')

    bob.page.once('dialog', (dialog) => dialog.accept('bob-side'))
    await bob.page.getByTestId('new-project').click()
    // Bob's URL already names a project: wait for the IDE of the new one, not for any IDE.
    await bob.page.waitForFunction((old) => {
      const ide = document.querySelector('[data-testid=ide]')
      return ide !== null && ide.dataset.projectId !== old
    }, config.project_id)
    await openPlan(alice)
    const afterBob = await bars(alice)

    await alice.page.getByTestId('upgrade-pro').click()
    await alice.page.waitForURL(/\/checkout\//)
    await alice.shot('checkout')
    await alice.page.locator('#pay').click()
    await alice.page.waitForURL(/billing=success/)
    await alice.page.getByTestId('ide').waitFor()
    // The webhook is processed by a job: look again until the plan is pro.
    for (let i = 0; i < 100; i++) {
      await openPlan(alice)
      if (await alice.page.evaluate(() => document.querySelector('[data-testid=plan]').dataset.plan) === 'pro') break
      await alice.page.waitForTimeout(200)
    }
    const pro = await bars(alice)
    const proPlan = await alice.page.getByTestId('plan-name').textContent()
    const screenshot = await alice.shot('pro')
    return { free, freePlan, afterBob, pro, proPlan, screenshot, problems: [...alice.problems, ...bob.problems] }
  },

  // The page itself: sign-up through the form, CSP in force (an inline script is refused).
  async signup (browser, config) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
    const page = await context.newPage()
    page.setDefaultTimeout(STEP_MS)
    page.setDefaultNavigationTimeout(LOAD_MS)
    const problems = []
    let probing = false // the deliberate inline script below must be refused, not reported
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`))
    page.on('console', (msg) => {
      log('console', msg.type(), msg.text())
      if (!probing && (msg.type() === 'error' || /Content.Security.Policy/i.test(msg.text()))) problems.push(`console ${msg.type()}: ${msg.text()}`)
    })
    await page.goto(config.url + '/')
    await page.screenshot({ path: join(config.artifacts, '01-sign-in.png') })
    await page.getByTestId('auth-toggle').click()
    await page.getByTestId('auth-name').fill(config.user.name)
    await page.getByTestId('auth-email').fill(config.user.email)
    await page.getByTestId('auth-password').fill(config.user.password)
    await page.getByTestId('auth-submit').click()
    await page.getByTestId('ide').waitFor()
    await page.locator('[data-testid=tree-item]').first().waitFor()
    await page.screenshot({ path: join(config.artifacts, '02-signed-up.png') })
    // Let the editor and terminal settle (their styles are applied at run time), then probe.
    await page.locator('[data-testid=tab][data-status=synced]').first().waitFor()
    await page.locator('[data-testid=terminal][data-status=open]').waitFor()
    probing = true
    const inlineRan = await page.evaluate(() => {
      window.__inline = false
      const s = document.createElement('script')
      s.textContent = 'window.__inline = true'
      document.body.append(s)
      return window.__inline
    })
    const storage = await page.evaluate(() => ({ local: Object.keys(localStorage), session: Object.keys(sessionStorage) }))
    const result = {
      hash: await page.evaluate(() => location.hash),
      user: await page.getByTestId('current-user').textContent(),
      tree: await page.locator('[data-testid=tree-name]').allTextContents(),
      inline_script_ran: inlineRan,
      storage,
      problems
    }
    await context.close()
    return result
  }
}

async function main () {
  const scenario = process.argv[2]
  if (!scenarios[scenario]) throw new Error(`unknown scenario ${scenario}`)
  const config = await readConfig()
  log('launching chromium for', scenario)
  const browser = await chromium.launch({ executablePath: config.chromium, args: ARGS, headless: true })
  try {
    log('chromium up')
    const result = await scenarios[scenario](browser, config)
    log('scenario done')
    process.stdout.write(JSON.stringify(result) + '\n')
  } finally {
    await browser.close()
  }
}

main().catch((err) => {
  log('FAILED', err && err.stack ? err.stack : String(err))
  process.exit(1)
})
