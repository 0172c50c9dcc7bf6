import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeClick, shortSelector } from '../../src/selector.js';

// A tiny stand-in for DOM elements: what the selector reads, nothing more.
function el(tagName, attrs = {}, children = []) {
  const node = {
    nodeType: 1,
    tagName: tagName.toUpperCase(),
    id: attrs.id || '',
    parentElement: null,
    getAttribute: (name) => (name in attrs ? attrs[name] : null),
    // Present to prove they are never read into the result.
    textContent: 'SECRET TEXT',
    value: 'secret value',
  };
  for (const child of children) child.parentElement = node;
  return node;
}

test('tag, id and at most two classes', () => {
  assert.equal(shortSelector(el('button', { id: 'buy', class: 'btn primary large' })), 'button#buy.btn.primary');
  assert.equal(shortSelector(el('div')), 'div');
  assert.equal(shortSelector(el('span', { class: '  a   b ' })), 'span.a.b');
});

test('generated-looking or odd class names are skipped', () => {
  assert.equal(shortSelector(el('div', { class: '1abc css-1x2y3z4w5v6u7t8s9r0q1p2o3n4m5l6k7 ok has:colon' })), 'div.ok');
});

test('the result stays short whatever the page puts in id', () => {
  assert.ok(shortSelector(el('div', { id: 'x'.repeat(500) })).length <= 100);
});

test('a click inside a button names the button', () => {
  const icon = el('svg');
  const label = el('span', { class: 'label' }, [icon]);
  const button = el('button', { id: 'buy', class: 'btn' }, [label]);
  el('form', {}, [button]);
  assert.deepEqual(describeClick(icon), { target: 'button#buy.btn', name: undefined });
});

test('data-rum-action names the action, from the element or an ancestor', () => {
  const inner = el('span');
  el('div', { 'data-rum-action': 'add-to-cart', class: 'card' }, [inner]);
  assert.deepEqual(describeClick(inner), { target: 'div.card', name: 'add-to-cart' });
});

test('role=button counts as interactive', () => {
  const inner = el('i');
  el('div', { role: 'button', id: 'menu' }, [inner]);
  assert.equal(describeClick(inner).target, 'div#menu');
});

test('no text content or input values ever appear', () => {
  const input = el('input', { id: 'card-number', class: 'field', value: '4111 1111 1111 1111' });
  const result = JSON.stringify(describeClick(input));
  assert.equal(result, JSON.stringify({ target: 'input#card-number.field' }));
  assert.ok(!/SECRET|secret|4111/.test(result));
});

test('a plain element with no interactive ancestor is named itself', () => {
  const p = el('p', { class: 'intro' });
  el('section', {}, [p]);
  assert.deepEqual(describeClick(p), { target: 'p.intro' });
});

test('the walk up stops after a few levels', () => {
  let node = el('em');
  const leaf = node;
  for (let i = 0; i < 10; i++) node = el('div', {}, [node]);
  el('button', { id: 'far' }, [node]);
  assert.equal(describeClick(leaf).target, 'em');
});
