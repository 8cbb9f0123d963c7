// node analyse.mjs < {"path": "src/app.ts", "text": "..."}: ESLint's messages (fixed config
// beside this file) and the outline (functions, classes, methods with their line ranges, from
// the TypeScript ESTree parser), as one JSON line on stdout.
import { ESLint } from 'eslint'
import { parse } from '@typescript-eslint/parser'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))

async function readInput () {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString())
}

function outline (text, path) {
  let ast
  try {
    ast = parse(text, { loc: true, range: true, jsx: /\.[jt]sx$/.test(path), sourceType: 'module' })
  } catch (err) {
    return []
  }
  const blocks = []
  const visit = (node, owner) => {
    if (!node || typeof node.type !== 'string') return
    let name = null
    let kind = null
    if (node.type === 'FunctionDeclaration' || node.type === 'FunctionExpression' || node.type === 'ArrowFunctionExpression') {
      kind = 'function'
      name = node.id?.name ?? owner
    } else if (node.type === 'ClassDeclaration' || node.type === 'ClassExpression') {
      kind = 'class'
      name = node.id?.name ?? owner
    } else if (node.type === 'MethodDefinition') {
      kind = 'method'
      name = node.key?.name ?? node.key?.value ?? null
    }
    if (kind && name) blocks.push({ kind, name, line_start: node.loc.start.line, line_end: node.loc.end.line })
    // An anonymous function takes the name of the variable or property it is assigned to; a
    // method's function expression is the method itself (no owner: not listed twice).
    const childOwner = node.type === 'VariableDeclarator' ? node.id?.name : (node.type === 'Property' ? (node.key?.name ?? null) : null)
    for (const [key, value] of Object.entries(node)) {
      if (key === 'parent' || key === 'loc' || key === 'range') continue
      if (Array.isArray(value)) value.forEach((child) => visit(child, childOwner))
      else if (value && typeof value === 'object') visit(value, childOwner)
    }
  }
  visit(ast, null)
  return blocks
}

const { path, text } = await readInput()
const eslint = new ESLint({ cwd: here, overrideConfigFile: join(here, 'eslint.config.mjs') })
const [result] = await eslint.lintText(text, { filePath: join(here, 'input', path.replace(/^\/+/, '')) })
const messages = (result?.messages ?? []).map((m) => ({
  rule: m.ruleId, severity: m.severity, message: m.message, line: m.line ?? 1, end_line: m.endLine ?? m.line ?? 1, fatal: Boolean(m.fatal)
}))
process.stdout.write(JSON.stringify({ eslint: messages, outline: outline(text, path), version: ESLint.version }) + '\n')
