// A tiny element builder: h('div', {class, onclick, ...}, children).
export function h (tag, attrs = {}, children = []) {
  const el = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value)
    else if (key === 'hidden') el.hidden = Boolean(value)
    else if (key === 'value') el.value = value
    else if (key === 'style' && typeof value === 'object') Object.assign(el.style, value)
    else el.setAttribute(key, value === true ? '' : String(value))
  }
  for (const child of [].concat(children)) {
    if (child === undefined || child === null || child === false) continue
    el.append(child instanceof Node ? child : document.createTextNode(String(child)))
  }
  return el
}

export function $ (selector, root = document) {
  return root.querySelector(selector)
}
