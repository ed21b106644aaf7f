// A browser behind Caddy: open an app URL, get sent to portcullis's login page, log in, land
// back on the app, whose upstream saw Remote-User. Started by gateway.py. Environment:
//   APP_URL, USERNAME, PASSWORD, ARTIFACT_DIR, CHROMIUM (default /usr/bin/chromium)
// Prints PASS/FAIL lines and exits 1 on any failure (saving gateway-failure.png).
import { chromium } from '../browser/node_modules/playwright-core/index.mjs';
import path from 'node:path';

const { APP_URL, USERNAME, PASSWORD, ARTIFACT_DIR } = process.env;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
let failed = 0;
const check = (ok, what) => {
  console.log(`${ok ? 'PASS' : 'FAIL'}: ${what}`);
  if (!ok) failed += 1;
};

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
const page = await (await browser.newContext()).newPage();
page.setDefaultTimeout(15_000);
try {
  await page.goto(APP_URL);
  const login = new URL(page.url());
  check(login.pathname === '/accounts/login/', `the app sent the browser to the login page (${page.url()})`);
  check(login.searchParams.get('next') === APP_URL, 'with next= the app URL');
  await page.fill('#id_username', USERNAME);
  await page.fill('#id_password', 'not-the-password');
  await page.click('button[type=submit]');
  check((await page.textContent('.errornote')).includes('Please enter a correct username and password'),
        'a wrong password shows Django\'s message on the form');
  await page.fill('#id_password', PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForURL(APP_URL);
  const seen = JSON.parse(await page.textContent('body'));
  check(seen.headers['remote-user'] === USERNAME, `the upstream saw Remote-User: ${seen.headers['remote-user']}`);
  check(seen.headers['remote-auth'] === 'session', 'authenticated by the session the login page opened');
  await page.screenshot({ path: path.join(ARTIFACT_DIR, 'gateway-caddy-login.png') });
} catch (e) {
  check(false, `the flow ran to the end: ${e.message}`);
  await page.screenshot({ path: path.join(ARTIFACT_DIR, 'gateway-failure.png') }).catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
