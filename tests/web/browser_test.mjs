// Browser test of the web page against a running `fundus serve` (started by run_browser_test.sh).
// Usage: node browser_test.mjs BASE_URL OUT_DIR QUERY_IMAGE ADD_IMAGE
// Drives Debian's chromium headless through playwright-core (no browser download), as a clinician
// would: upload, read the results, toggle the attention map, open a case with the keyboard, see an image
// that is not a fundus photograph refused with its reason, and see a case added through the API come
// back in the next query. Screenshots go to OUT_DIR.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

const [baseUrl, outDir, queryImage, addImage] = process.argv.slice(2);
if (!addImage) {
  console.error('usage: node browser_test.mjs BASE_URL OUT_DIR QUERY_IMAGE ADD_IMAGE');
  process.exit(2);
}
const K = 8;
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fundus-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.FUNDUS_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1366, height: 768 },
});

// An all-black RGB PNG: no field of view, so the server refuses it (422 no_field_of_view).
function blackPng(w, h) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;  // bit depth
  ihdr[9] = 2;  // RGB
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
                        chunk('IDAT', zlib.deflateSync(Buffer.alloc(h * (1 + 3 * w)))), chunk('IEND', Buffer.alloc(0))]);
}

const problems = [];
let expectRefusal = false;  // the browser logs the expected 422 of a refused upload as a console error
let step = 'start';
const log = (s) => { step = s; console.log(`- ${s}`); };

try {
  const page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !(expectRefusal && /status of 422/.test(m.text()))) problems.push(`console error: ${m.text()}`);
  });
  page.on('request', (r) => {
    if (!r.url().startsWith(baseUrl) && !r.url().startsWith('data:') && !r.url().startsWith('blob:'))
      problems.push(`request to another origin: ${r.url()}`);
  });
  const shot = (name, target = page) => target.screenshot({ path: path.join(outDir, `web-${name}.png`) });

  log('page loads with the research-tool notice');
  await page.goto(baseUrl);
  await page.getByText('Research tool, not a diagnosis.').waitFor({ state: 'visible' });
  assert.match(await page.title(), /Fundus Retrieval/);
  // Every form control has an accessible name.
  const unlabelled = await page.$$eval('input, button', (els) =>
    els.filter((e) => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label') &&
                      !e.textContent.trim()).map((e) => e.id || e.outerHTML.slice(0, 60)));
  assert.deepEqual(unlabelled, [], 'controls without a label');

  log(`upload a photograph and wait for ${K} result cards`);
  await page.fill('#k-input', String(K));
  await page.setInputFiles('#file-input', queryImage);
  await page.locator('#results .card').nth(K - 1).waitFor({ timeout: 60000 });
  assert.equal(await page.locator('#results .card').count(), K);
  await page.locator('#query-image').evaluate((img) => img.complete || new Promise((r) => { img.onload = r; }));
  assert.ok(await page.locator('#query-image').evaluate((img) => img.naturalWidth > 0), 'query image shown');
  await shot('query');

  log('cards show grades (as text) and similarities, sorted');
  const cards = await page.$$eval('#results .card', (els) => els.map((e) => ({
    badge: e.querySelector('.badge').textContent,
    badgeClass: e.querySelector('.badge').className,
    sim: parseFloat(e.querySelector('.sim').textContent),
    label: e.getAttribute('aria-label'),
  })));
  for (const c of cards) {
    assert.match(c.badge, /^Grade [0-4] · (No DR|Mild|Moderate|Severe|PDR)$/);
    assert.match(c.badgeClass, /grade-[0-4]/);
    assert.ok(Number.isFinite(c.sim) && c.sim >= -1 && c.sim <= 1, `similarity ${c.sim}`);
    assert.match(c.label, /similarity/);
  }
  for (let i = 1; i < cards.length; ++i) assert.ok(cards[i - 1].sim >= cards[i].sim, 'sorted by similarity');
  assert.equal(await page.locator('#vote-chart li').count(), 5);
  assert.match(await page.locator('#estimate-text').textContent(), /Grade [0-4]/);
  await shot('results', page.locator('.results-panel'));

  log('toggle the attention overlay');
  await page.check('#attention-toggle');
  await page.waitForFunction(() => document.querySelector('#query-image').src.includes('/attention.png'));
  await page.waitForFunction(() => {
    const img = document.querySelector('#query-image');
    return img.complete && img.naturalWidth > 0;
  });
  await shot('attention', page.locator('.query-panel'));
  await page.uncheck('#attention-toggle');
  await page.waitForFunction(() => document.querySelector('#query-image').src.includes('/preprocessed.png'));

  log('open a case with the keyboard only');
  await page.locator('#exclude-input').focus();  // start from a known place in the tab order
  let onCard = false;
  for (let i = 0; i < 10 && !onCard; ++i) {
    await page.keyboard.press('Tab');
    onCard = await page.evaluate(() => document.activeElement.classList.contains('card'));
  }
  assert.ok(onCard, 'Tab reaches the result cards');
  const focusedId = await page.evaluate(() => document.activeElement.dataset.id);
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none', 'focused card has a visible outline');
  await page.keyboard.press('Enter');
  await page.locator('#case-dialog[open]').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'dialog-close');
  await page.waitForFunction(() => {
    const img = document.querySelector('#dialog-image');
    return img.complete && img.naturalWidth > 0;
  });
  assert.match(await page.locator('#dialog-title').textContent(), /Grade [0-4]/);
  await page.check('#dialog-attention-toggle');
  await page.waitForFunction(() => {
    const img = document.querySelector('#dialog-image');
    return img.src.includes('/attention.png') && img.complete && img.naturalWidth > 0;
  });
  await shot('dialog');
  await page.keyboard.press('Escape');
  await page.locator('#case-dialog:not([open])').waitFor({ state: 'attached' });
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), focusedId, 'focus returns to the card');

  log('the page fits a 1366x768 screen without horizontal scrolling');
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));

  log('an image with no field of view is refused with the reason, and the earlier results disappear');
  expectRefusal = true;
  await page.setInputFiles('#file-input', { name: 'black.png', mimeType: 'image/png', buffer: blackPng(320, 240) });
  await page.waitForFunction(() => document.querySelector('#status').classList.contains('error'), null, { timeout: 60000 });
  const refusal = await page.locator('#status').textContent();
  assert.match(refusal, /^Not searched: /);
  assert.match(refusal, /not a fundus photograph/);
  assert.match(refusal, /upload 'black\.png': no field of view found \(the image is practically uniform/);
  assert.equal(await page.locator('#results .card').count(), 0);
  assert.ok(await page.locator('#estimate').isHidden(), 'no grade suggestion');
  assert.ok(await page.locator('#query-view').isHidden(), 'no query image');
  await shot('no-field-of-view', page.locator('.results-panel'));
  expectRefusal = false;

  log('a case added through the API is returned by the next query');
  const form = new FormData();
  form.append('image', new Blob([fs.readFileSync(addImage)], { type: 'image/jpeg' }), 'added.jpg');
  form.append('grade', '3');
  form.append('id', 'browser-added');
  form.append('patient', 'BT1');
  form.append('eye', 'L');
  const headers = process.env.FUNDUS_TOKEN ? { Authorization: `Bearer ${process.env.FUNDUS_TOKEN}` } : {};
  const added = await fetch(`${baseUrl}api/cases`, { method: 'POST', body: form, headers });
  assert.equal(added.status, 201, await added.clone().text());
  const addedCase = await added.json();
  await page.setInputFiles('#file-input', addImage);
  await page.waitForFunction((id) => {
    const first = document.querySelector('#results .card');
    return first && first.dataset.id === String(id);
  }, addedCase.id, { timeout: 60000 });
  const first = await page.locator('#results .card').first();
  assert.match(await first.locator('.badge').textContent(), /^Grade 3 · Severe$/);
  assert.ok(parseFloat(await first.locator('.sim').textContent()) > 0.99, 'identical image: similarity ~1');

  assert.deepEqual(problems, []);
  console.log('browser test passed');
} catch (e) {
  console.error(`FAILED at step "${step}": ${e.stack || e}`);
  if (problems.length) console.error(problems.join('\n'));
  try { await context.pages()[0].screenshot({ path: path.join(outDir, 'failure.png') }); } catch { /* ignore */ }
  process.exitCode = 1;
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
