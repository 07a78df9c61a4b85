// Element helpers. Alert text comes from the network, so these only ever set text
// (textContent), never HTML.

/**
 * Creates an element with optional class, text, attributes and children.
 * @param {string} tag
 * @param {{class?: string, text?: string, attrs?: Record<string, string>, title?: string}} [options]
 * @param {(Node|string|null|undefined)[]} [children]
 */
export function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.class) node.className = options.class;
  if (options.text !== undefined) node.textContent = options.text;
  if (options.title !== undefined) node.title = options.title;
  for (const [name, value] of Object.entries(options.attrs || {})) {
    node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** Removes every child of `node`. */
export function clear(node) {
  node.replaceChildren();
}

/** Shows a short message at the bottom of the window. */
export function toast(message, isError = false) {
  const node = document.getElementById("toast");
  node.textContent = message;
  node.classList.toggle("error", isError);
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    node.hidden = true;
  }, isError ? 8000 : 3500);
}
