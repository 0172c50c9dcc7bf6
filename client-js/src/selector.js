// What a click is reported as: a short CSS-like selector of the element the
// user meant (the nearest interactive ancestor), and the developer-given
// `data-rum-action` name when there is one. Never text content or values.

var INTERACTIVE = /^(a|button|input|select|textarea|summary|label|option)$/i;
var ROLES = /^(button|link|tab|menuitem|checkbox|radio|switch|option)$/;
var CLASS = /^[a-z_-][\w-]{0,31}$/i;

/** `tag#id.class1.class2`: tag, id, and at most two plausible class names. */
export function shortSelector(el) {
  var classes = (el.getAttribute('class') || '').split(/\s+/).filter((c) => CLASS.test(c));
  return [el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')].concat(classes.slice(0, 2)).join('.').slice(0, 100);
}

/** `{target, name}` for a click on element `el`. */
export function describeClick(el) {
  for (var node = el, depth = 0, name; node && depth < 6; node = node.parentElement, depth++) {
    name = node.getAttribute('data-rum-action');
    if (name || INTERACTIVE.test(node.tagName) || ROLES.test(node.getAttribute('role'))) {
      return { target: shortSelector(node), name: name ? name.slice(0, 100) : undefined };
    }
  }
  return { target: shortSelector(el) };
}
