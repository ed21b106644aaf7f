// End-to-end test of the Swagger UI page (/docs/) in headless Chromium, driven by Playwright.
//
// Normally started by run.sh, which prepares a server and a user. Environment:
//   BASE_URL      e.g. http://127.0.0.1:38211 (no trailing slash needed)
//   USERNAME      a user that can log in
//   PASSWORD      its password
//   TOKEN         a DRF token key of that user (`portcullis drf_create_token USERNAME`)
//   ARTIFACT_DIR  where the screenshots go (created if missing)
//   CHROMIUM      optional; the browser binary (default /usr/bin/chromium)
//
// What it checks:
//   (a) every request the page makes goes to a loopback host: anything else is blocked,
//       recorded, and fails the run (the page must work fully offline, no CDN);
//   (b) Swagger UI renders and shows the seven tag sections of the spec;
//   (c) scenario "session": POST /login/ through "Try it out" answers 200, then GET /protected/
//       answers 200 with "Hello" in its body (the browser carries the session cookie);
//   (d) scenario "token", in a fresh browser context: the Authorize dialog offers the four
//       schemes (cookie session, Token, Bearer JWT, Basic); with `Token <key>` entered in
//       the token scheme, GET /profile/ answers 200;
//   (e) scenario "mfa", in a fresh context, for a user it enrols in TOTP first (over plain
//       HTTP, codes computed here by RFC 6238): POST /login/ through "Try it out" answers
//       {"mfa_required": true, "ephemeral_token"}; POST /mfa/verify/ with that token and a
//       code answers 200 and sets the session cookie; GET /whoami/ shows "aal": 2.
// Prints one PASS/FAIL line per check, a closing "N passed, N failed" line, and exits 1 on any
// failure (saving ARTIFACT_DIR/<scenario>-failure.png).

import { chromium } from 'playwright-core';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`FAIL: environment variable ${name} is not set`);
    process.exit(2);
  }
  return v;
};

const BASE_URL = env('BASE_URL').replace(/\/+$/, '');
const USERNAME = env('USERNAME');
const PASSWORD = env('PASSWORD');
const TOKEN = env('TOKEN');
const ARTIFACT_DIR = env('ARTIFACT_DIR');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// Bounds: one UI action or wait, one API call made through the page, and the whole run.
const STEP_TIMEOUT = 15_000;
const PAGE_LOAD_TIMEOUT = 30_000;
const RUN_TIMEOUT = 100_000;

// The tag sections the page must show (names as the spec declares them; compared
// case-insensitively so that e.g. "Jwt" -> "JWT" does not break the test).
const EXPECTED_TAGS = ['Session', 'Token', 'Jwt', 'Account', 'MFA', 'Admin', 'Examples', 'Services'];

fs.mkdirSync(ARTIFACT_DIR, { recursive: true });
// Screenshots left by an earlier run would be mistaken for this run's.
for (const f of ['swagger-session.png', 'swagger-token.png', 'swagger-mfa.png',
  'swagger-session-failure.png', 'swagger-token-failure.png', 'swagger-mfa-failure.png']) {
  fs.rmSync(path.join(ARTIFACT_DIR, f), { force: true });
}

let passed = 0;
let failed = 0;
const pass = (msg) => { passed += 1; console.log(`PASS: ${msg}`); };
const fail = (msg) => { failed += 1; console.log(`FAIL: ${msg}`); };

class CheckFailed extends Error {}
function check(cond, msg, detail = '') {
  if (cond) {
    pass(msg);
  } else {
    fail(detail ? `${msg} -- ${detail}` : msg);
    throw new CheckFailed(msg);
  }
}

// ---- (a) offline: only loopback hosts may be contacted ------------------------------------

const offHostRequests = [];

function isLoopbackUrl(raw) {
  let u;
  try { u = new URL(raw); } catch { return false; }
  if (u.protocol === 'data:' || u.protocol === 'blob:' || u.protocol === 'about:') return true;
  const h = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::1';
}

async function guardContext(context, label) {
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (isLoopbackUrl(url)) return route.continue();
    offHostRequests.push(`[${label}] ${route.request().method()} ${url}`);
    return route.abort('blockedbyclient');
  });
  // WebSockets are not routed by context.route; record any the page opens.
  context.on('page', (p) => watchPage(p, label));
}

const pageErrors = [];
function watchPage(page, label) {
  page.on('websocket', (ws) => {
    if (!isLoopbackUrl(ws.url().replace(/^ws/, 'http'))) offHostRequests.push(`[${label}] WEBSOCKET ${ws.url()}`);
  });
  page.on('pageerror', (err) => pageErrors.push(`[${label}] ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') console.log(`  (browser console error, ${label}: ${msg.text()})`);
  });
}

// ---- Swagger UI helpers --------------------------------------------------------------------

async function openDocs(page) {
  const resp = await page.goto(`${BASE_URL}/docs/`, { waitUntil: 'load', timeout: PAGE_LOAD_TIMEOUT });
  check(resp && resp.status() === 200, 'GET /docs/ answers 200', `status ${resp && resp.status()}`);
  // Swagger UI has rendered once the info block and at least one tag section exist.
  await page.locator('#ui .information-container .info .title').first().waitFor({ timeout: PAGE_LOAD_TIMEOUT });
  await page.locator('#ui .opblock-tag-section').first().waitFor({ timeout: PAGE_LOAD_TIMEOUT });
}

// The operation block for METHOD PATH. Swagger UI lists an operation once per tag; the first
// is used. The path is matched exactly as the spec declares it.
function operation(page, method, specPath) {
  return page
    .locator(`#ui .opblock.opblock-${method.toLowerCase()}`)
    .filter({ has: page.locator(`.opblock-summary-path[data-path="${specPath}"]`) })
    .first();
}

async function expand(op) {
  await op.scrollIntoViewIfNeeded({ timeout: STEP_TIMEOUT });
  if (!(await op.evaluate((el) => el.classList.contains('is-open')))) {
    await op.locator('.opblock-summary').first().click({ timeout: STEP_TIMEOUT });
  }
  await op.locator('.opblock-body').waitFor({ timeout: STEP_TIMEOUT });
}

async function tryItOut(op) {
  const btn = op.locator('button.try-out__btn');
  await btn.waitFor({ timeout: STEP_TIMEOUT });
  if ((await btn.innerText()).trim() === 'Try it out') await btn.click({ timeout: STEP_TIMEOUT });
  await op.locator('button.execute').waitFor({ timeout: STEP_TIMEOUT });
}

// Clicks Execute and returns the live response shown on the page: { status, body, curl, url }.
async function execute(op) {
  // A previous execution's result would satisfy the waits below at once: clear it first.
  const clear = op.locator('button.btn-clear');
  if (await clear.count()) await clear.first().click({ timeout: STEP_TIMEOUT });
  await op.locator('button.execute').click({ timeout: STEP_TIMEOUT });
  const status = op.locator('.live-responses-table tbody tr.response td.response-col_status').first();
  await status.waitFor({ timeout: STEP_TIMEOUT });
  const bodyLoc = op.locator('.live-responses-table .response-col_description pre').first();
  const body = (await bodyLoc.count()) ? (await bodyLoc.innerText()) : '';
  const curlLoc = op.locator('.curl-command .curl, .curl-command pre').first();
  const curl = (await curlLoc.count()) ? (await curlLoc.innerText()) : '';
  const urlLoc = op.locator('.request-url pre').first();
  const url = (await urlLoc.count()) ? (await urlLoc.innerText()) : '';
  return { status: (await status.innerText()).trim(), body, curl, url, statusLocator: status };
}

// Scrolls the live response's status cell to the middle of the viewport and takes a screenshot.
async function screenshotResponse(page, statusLocator, file) {
  await statusLocator.evaluate((el) => el.scrollIntoView({ block: 'center' }));
  await page.screenshot({ path: path.join(ARTIFACT_DIR, file) });
  console.log(`  screenshot: ${path.join(ARTIFACT_DIR, file)}`);
}

async function failureShot(page, name) {
  if (!page) return;
  try {
    const file = path.join(ARTIFACT_DIR, `${name}-failure.png`);
    await page.screenshot({ path: file, fullPage: false, timeout: 5_000 });
    console.log(`  failure screenshot: ${file}`);
  } catch (e) {
    console.log(`  (could not take a failure screenshot: ${e.message})`);
  }
}

// ---- the spec, to match paths exactly as Swagger UI shows them ----------------------------

async function loadSpec() {
  const res = await fetch(`${BASE_URL}/openapi.json`, { signal: AbortSignal.timeout(STEP_TIMEOUT) });
  check(res.ok, 'GET /openapi.json answers 200', `status ${res.status}`);
  return res.json();
}

function specPath(spec, operationId) {
  for (const [p, item] of Object.entries(spec.paths || {})) {
    for (const op of Object.values(item)) {
      if (op && op.operationId === operationId) return p;
    }
  }
  return null;
}

// ---- scenarios ------------------------------------------------------------------------------

async function scenarioPageAndSession(browser, spec) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await guardContext(context, 'session');
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  try {
    await openDocs(page);
    pass('Swagger UI rendered');

    // (b) tag sections.
    const shown = await page.locator('#ui .opblock-tag-section h3.opblock-tag').evaluateAll(
      (els) => els.map((e) => e.getAttribute('data-tag')));
    const shownLower = shown.map((t) => (t || '').toLowerCase());
    const declared = (spec.tags || []).map((t) => t.name);
    for (const tag of EXPECTED_TAGS) {
      check(shownLower.includes(tag.toLowerCase()),
        `tag section "${tag}" is shown`,
        `sections on the page: [${shown.join(', ')}]; tags declared in the spec: [${declared.join(', ')}]`);
    }

    // (c) POST /login/ then GET /protected/.
    const loginPath = specPath(spec, 'login');
    const protectedPath = specPath(spec, 'protected');
    check(loginPath && protectedPath, 'the spec has the login and protected operations',
      `login: ${loginPath}, protected: ${protectedPath}`);

    const login = operation(page, 'post', loginPath);
    await expand(login);
    await tryItOut(login);
    const bodyBox = login.locator('textarea.body-param__text');
    await bodyBox.waitFor();
    await bodyBox.fill(JSON.stringify({ username: USERNAME, password: PASSWORD }, null, 2));
    const loginRes = await execute(login);
    check(loginRes.status === '200', `POST ${loginPath} via "Try it out" shows 200`,
      `shown: ${loginRes.status}, body: ${loginRes.body.slice(0, 300)}, request URL: ${loginRes.url}`);
    check(/Logged in successfully/.test(loginRes.body), `POST ${loginPath} body says "Logged in successfully"`,
      `body: ${loginRes.body.slice(0, 300)}`);
    const cookies = await context.cookies(BASE_URL);
    check(cookies.some((c) => c.name === 'sessionid' && c.httpOnly),
      'the browser now holds the HttpOnly sessionid cookie',
      `cookies: ${cookies.map((c) => c.name).join(', ') || '(none)'}`);

    const prot = operation(page, 'get', protectedPath);
    await expand(prot);
    await tryItOut(prot);
    const protRes = await execute(prot);
    check(protRes.status === '200', `GET ${protectedPath} via "Try it out" shows 200 (session cookie carried)`,
      `shown: ${protRes.status}, body: ${protRes.body.slice(0, 300)}`);
    check(protRes.body.includes('Hello'), `GET ${protectedPath} body contains "Hello"`,
      `body: ${protRes.body.slice(0, 300)}`);
    await screenshotResponse(page, protRes.statusLocator, 'swagger-session.png');

    // An unsafe request under the session: the page copies the csrftoken cookie into
    // X-CSRFToken (DRF's SessionAuthentication refuses it with 403 otherwise).
    const dataPath = specPath(spec, 'session_data_patch');
    check(dataPath, 'the spec has the session data operation', '');
    const patch = operation(page, 'patch', dataPath);
    await expand(patch);
    await tryItOut(patch);
    const patchBox = patch.locator('textarea.body-param__text');
    await patchBox.waitFor();
    await patchBox.fill(JSON.stringify({ theme: 'dark' }, null, 2));
    const patchRes = await execute(patch);
    check(patchRes.status === '200', `PATCH ${dataPath} via "Try it out" shows 200 (CSRF header filled in by the page)`,
      `shown: ${patchRes.status}, body: ${patchRes.body.slice(0, 300)}, curl: ${patchRes.curl.slice(0, 300)}`);
    check(patchRes.body.includes('dark'), `PATCH ${dataPath} body has the merged data`, `body: ${patchRes.body.slice(0, 300)}`);
    return true;
  } catch (e) {
    if (!(e instanceof CheckFailed)) fail(`scenario session: ${e.message.split('\n')[0]}`);
    await failureShot(page, 'swagger-session');
    return false;
  } finally {
    await context.close();
  }
}

async function scenarioToken(browser, spec) {
  // A fresh context: no cookie from the session scenario.
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await guardContext(context, 'token');
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  try {
    await openDocs(page);
    check((await context.cookies(BASE_URL)).length === 0, 'fresh context has no cookies');

    await page.locator('.scheme-container button.authorize').click();
    const dialog = page.locator('.dialog-ux .modal-ux');
    await dialog.waitFor();
    const items = dialog.locator('.auth-container');
    await items.first().waitFor();
    const texts = await items.allInnerTexts();
    const norm = texts.map((t) => t.replace(/\s+/g, ' '));
    const find = (re) => norm.find((t) => re.test(t));
    const schemes = spec.components && spec.components.securitySchemes || {};
    const nameOf = (pred) => Object.entries(schemes).find(([, s]) => pred(s))?.[0];
    const cookieName = nameOf((s) => s.type === 'apiKey' && s.in === 'cookie');
    const tokenName = nameOf((s) => s.type === 'apiKey' && s.in === 'header' && s.name === 'Authorization');
    const bearerName = nameOf((s) => s.type === 'http' && /^bearer$/i.test(s.scheme));
    const basicName = nameOf((s) => s.type === 'http' && /^basic$/i.test(s.scheme));
    check(cookieName && find(new RegExp(`^${cookieName} \\(apiKey\\).*Name: sessionid.*In: cookie`)),
      `Authorize offers the cookie scheme (${cookieName}: apiKey sessionid in cookie)`, `dialog: ${norm.join(' | ')}`);
    check(tokenName && find(new RegExp(`^${tokenName} \\(apiKey\\).*Name: Authorization.*In: header`)),
      `Authorize offers the Token scheme (${tokenName}: apiKey Authorization in header)`, `dialog: ${norm.join(' | ')}`);
    check(bearerName && find(new RegExp(`^${bearerName} \\(http, Bearer\\)`)),
      `Authorize offers the Bearer scheme (${bearerName}: http bearer)`, `dialog: ${norm.join(' | ')}`);
    check(basicName && find(new RegExp(`^${basicName} \\(http, Basic\\)`)),
      `Authorize offers the Basic scheme (${basicName}: http basic)`, `dialog: ${norm.join(' | ')}`);

    const tokenItem = items.filter({ has: page.locator('h4', { hasText: new RegExp(`^${tokenName}\\s*\\(apiKey\\)`) }) });
    await tokenItem.locator('input[type="text"], input:not([type])').first().fill(`Token ${TOKEN}`);
    await tokenItem.locator('button.authorize[type="submit"], button.authorize').first().click();
    // Once authorized, the item offers "Logout" instead of "Authorize".
    await tokenItem.locator('button', { hasText: 'Logout' }).waitFor();
    pass(`Authorize accepted "Token <key>" for the ${tokenName} scheme`);
    await dialog.locator('button.btn-done').first().click();
    await dialog.waitFor({ state: 'detached' });

    const profilePath = specPath(spec, 'profile');
    check(profilePath, 'the spec has the profile operation');
    const profile = operation(page, 'get', profilePath);
    await expand(profile);
    await tryItOut(profile);
    const res = await execute(profile);
    check(/-H ['"]Authorization: Token /.test(res.curl),
      'the request Swagger UI built carries "Authorization: Token <key>"', `curl: ${res.curl}`);
    check(res.status === '200', `GET ${profilePath} via "Try it out" shows 200 (Token authentication)`,
      `shown: ${res.status}, body: ${res.body.slice(0, 300)}`);
    check(res.body.includes(USERNAME), `GET ${profilePath} body names the user "${USERNAME}"`,
      `body: ${res.body.slice(0, 300)}`);
    await screenshotResponse(page, res.statusLocator, 'swagger-token.png');
    return true;
  } catch (e) {
    if (!(e instanceof CheckFailed)) fail(`scenario token: ${e.message.split('\n')[0]}`);
    await failureShot(page, 'swagger-token');
    return false;
  } finally {
    await context.close();
  }
}

// ---- the second factor ----------------------------------------------------------------------

// RFC 6238 (HMAC-SHA-1, 6 digits, 30 s) for a base32 secret at unix time `t`.
function totp(secretB32, t) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secretB32.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(t / 30)));
  const h = crypto.createHmac('sha1', key).update(counter).digest();
  const o = h[19] & 15;
  const bin = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}

async function api(pathname, body, auth) {
  const headers = { 'Content-Type': 'application/json' };
  if (auth) headers.Authorization = auth;
  const res = await fetch(`${BASE_URL}${pathname}`, {
    method: 'POST', headers, body: JSON.stringify(body), signal: AbortSignal.timeout(STEP_TIMEOUT),
  });
  return { status: res.status, body: await res.json() };
}

// A user with an active TOTP: its name, password and secret (activated with the current step).
async function enrolledUser() {
  const username = `mona${crypto.randomBytes(3).toString('hex')}`;
  const password = `Mfa-${crypto.randomBytes(9).toString('hex')}`;
  check((await api('/register/', { username, password })).status === 201, `registered ${username}`);
  const token = (await api('/api-token-auth/', { username, password })).body.token;
  const setup = await api('/mfa/totp/setup/', {}, `Token ${token}`);
  check(setup.status === 200 && setup.body.secret, 'POST /mfa/totp/setup/ gives a secret', JSON.stringify(setup.body));
  const activated = await api('/mfa/totp/activate/', { code: totp(setup.body.secret, Date.now() / 1000) }, `Token ${token}`);
  check(activated.status === 200, 'POST /mfa/totp/activate/ with the current code', JSON.stringify(activated.body));
  return { username, password, secret: setup.body.secret };
}

async function scenarioMfa(browser, spec) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await guardContext(context, 'mfa');
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  try {
    const user = await enrolledUser();
    await openDocs(page);
    const login = operation(page, 'post', specPath(spec, 'login'));
    await expand(login);
    await tryItOut(login);
    await login.locator('textarea.body-param__text').fill(JSON.stringify({ username: user.username, password: user.password }));
    const first = await execute(login);
    const token = (first.body.match(/"ephemeral_token":\s*"([0-9a-f]+)"/) || [])[1];
    check(first.status === '200' && /"mfa_required":\s*true/.test(first.body) && token,
      'POST /login/ for a TOTP user answers mfa_required and an ephemeral token', `shown: ${first.status} ${first.body.slice(0, 300)}`);
    check(!(await context.cookies(BASE_URL)).some((c) => c.name === 'sessionid'), 'no session cookie yet');

    const verifyPath = specPath(spec, 'mfa_verify');
    check(verifyPath, 'the spec has the verify operation');
    const verify = operation(page, 'post', verifyPath);
    await expand(verify);
    await tryItOut(verify);
    // The next step's code: activation used the current one (a code is accepted once).
    const code = totp(user.secret, Date.now() / 1000 + 30);
    await verify.locator('textarea.body-param__text').fill(JSON.stringify({ ephemeral_token: token, code }));
    const second = await execute(verify);
    check(second.status === '200' && /Logged in successfully/.test(second.body),
      `POST ${verifyPath} via "Try it out" completes the login`, `shown: ${second.status} ${second.body.slice(0, 300)}`);
    check((await context.cookies(BASE_URL)).some((c) => c.name === 'sessionid' && c.httpOnly),
      'the browser now holds the session cookie');

    const whoami = operation(page, 'get', specPath(spec, 'whoami'));
    await expand(whoami);
    await tryItOut(whoami);
    const who = await execute(whoami);
    check(who.status === '200' && /"aal":\s*2/.test(who.body), 'GET /whoami/ shows "aal": 2',
      `shown: ${who.status} ${who.body.slice(0, 300)}`);
    await screenshotResponse(page, who.statusLocator, 'swagger-mfa.png');
    return true;
  } catch (e) {
    if (!(e instanceof CheckFailed)) fail(`scenario mfa: ${e.message.split('\n')[0]}`);
    await failureShot(page, 'swagger-mfa');
    return false;
  } finally {
    await context.close();
  }
}

// ---- main ---------------------------------------------------------------------------------

async function main() {
  const started = Date.now();
  const watchdog = setTimeout(() => {
    console.log(`FAIL: the run took longer than ${RUN_TIMEOUT / 1000}s`);
    console.log(`${passed} passed, ${failed + 1} failed`);
    process.exit(1);
  }, RUN_TIMEOUT);

  let spec;
  try {
    spec = await loadSpec();
  } catch (e) {
    if (!(e instanceof CheckFailed)) fail(`fetching ${BASE_URL}/openapi.json: ${e.message}`);
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(1);
  }

  // launch() gives the browser a fresh temporary profile (user-data-dir) of its own, removed on
  // close; each scenario then runs in its own new context (no shared cookies or storage).
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30_000,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    });
  } catch (e) {
    fail(`launching ${CHROMIUM}: ${e.message.split('\n')[0]}`);
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(1);
  }
  console.log(`  chromium ${browser.version()}, playwright-core ${JSON.parse(fs.readFileSync(new URL('./node_modules/playwright-core/package.json', import.meta.url))).version}`);

  try {
    await scenarioPageAndSession(browser, spec);
    await scenarioToken(browser, spec);
    await scenarioMfa(browser, spec);
  } finally {
    await browser.close();
  }

  if (offHostRequests.length === 0) {
    pass('no request left the loopback interface (the page works offline)');
  } else {
    fail(`requests to non-loopback hosts were attempted (blocked):\n    ${offHostRequests.join('\n    ')}`);
  }
  if (pageErrors.length === 0) {
    pass('no uncaught JavaScript error on the page');
  } else {
    fail(`uncaught JavaScript errors on the page:\n    ${pageErrors.join('\n    ')}`);
  }

  clearTimeout(watchdog);
  console.log(`  took ${((Date.now() - started) / 1000).toFixed(1)}s`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => {
  console.log(`FAIL: ${e.stack || e}`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
