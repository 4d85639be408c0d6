// Signs in to the demo as its owner (password, then a TOTP code from `onshi totp-code`) and takes a
// full-page screenshot of each path at each width and language. Used by scripts/screens.
const { chromium } = require('playwright-core');
const { execFileSync } = require('child_process');
const fs = require('fs');

const [base, out, ...asked] = process.argv.slice(2);
// `{clinic}` in a path stands for the first clinic the dashboard links to; `{month}` for this month (JST),
// `{prev}` for the month before.
const paths = asked.length ? asked : [
  '/', '/dashboard', '/dashboard/clinics/{clinic}', '/fleet', '/billing', '/billing/{clinic}/{month}',
  '/onboarding', '/staff', '/audit', '/account', '/no-such-page',
];
const widths = [['desktop', 1366, 900], ['phone', 390, 844]];
const code = () => execFileSync(process.env.ONSHI_BIN, ['totp-code', process.env.ONSHI_TOTP_KEY]).toString().trim();
const name = (p) => (p.replace(/[^a-zA-Z0-9]+/g, '-').replace(/^-|-$/g, '') || 'home');

(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/signin`);
  await page.fill('input[name=email]', 'owner@demo.onshi.invalid');
  await page.fill('input[name=password]', 'onshi-demo-2026');
  await page.click("form[action='/signin'] button");
  await page.fill('input[name=code]', code());
  await page.click("form[action='/signin/totp'] button");
  await page.waitForSelector("nav a[href='/dashboard']");
  // ONSHI_SCREENS_BEFORE: steps that make the state to look at, as JSON:
  // [{"page": "/settings/webhooks", "fill": {"input[name=url]": "https://…"}, "check": ["input[name=event]"],
  //   "click": "form[action='/settings/webhooks'] button"}]
  for (const step of JSON.parse(process.env.ONSHI_SCREENS_BEFORE || '[]')) {
    await page.goto(`${base}${step.page}`);
    for (const [selector, value] of Object.entries(step.fill || {})) await page.fill(selector, value);
    for (const selector of step.check || []) await page.check(selector);
    if (step.click) await Promise.all([page.waitForLoadState(), page.click(step.click)]);
    if (step.wait_ms) await page.waitForTimeout(step.wait_ms);
  }
  await page.goto(`${base}/dashboard`);
  const link = await page.getAttribute("a[href^='/dashboard/clinics/']", 'href');
  const clinic = link ? link.split('/').pop() : '';
  const now = new Date(Date.now() + 9 * 3600 * 1000);
  const month = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
  const last = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
  const prev = `${last.getUTCFullYear()}-${String(last.getUTCMonth() + 1).padStart(2, '0')}`;
  for (const lang of ['ja', 'en']) {
    for (const [label, width, height] of widths) {
      await page.setViewportSize({ width, height });
      for (const raw of paths) {
        const p = raw.replaceAll('{clinic}', clinic).replaceAll('{month}', month).replaceAll('{prev}', prev);
        const url = `${base}${p}${p.includes('?') ? '&' : '?'}lang=${lang}`;
        const response = await page.goto(url);
        // ONSHI_SCREENS_WAIT_MS: time for live updates (the feed) to arrive before the shot.
        await page.waitForTimeout(Number(process.env.ONSHI_SCREENS_WAIT_MS || 0));
        const file = `${out}/${name(raw)}-${lang}-${label}.png`;
        await page.screenshot({ path: file, fullPage: true });
        // ONSHI_SCREENS_TEXT=1: the page's text beside the shot, to search (for Japanese left on an
        // English page, say) rather than read off the picture.
        if (process.env.ONSHI_SCREENS_TEXT) fs.writeFileSync(file.replace(/\.png$/, '.txt'), await page.innerText('body'));
        // What a reader has to scroll sideways for: the page itself, or a table wider than its box.
        const wide = await page.evaluate(() => {
          const found = [];
          if (document.documentElement.scrollWidth > window.innerWidth + 1) found.push('page');
          for (const t of document.querySelectorAll('table')) {
            // The table itself scrolls on a phone (display: block); a wrapping .scroll box on a desktop.
            const boxes = [t, t.closest('.scroll')].filter(Boolean);
            if (boxes.some((box) => box.scrollWidth > box.clientWidth + 1)) {
              found.push(t.dataset.testid || (t.querySelector('th') || {}).textContent || 'table');
            }
          }
          return found;
        });
        const note = wide.length ? `  scrolls sideways: ${wide.join(', ')}` : '';
        console.log(`${response ? response.status() : '---'} ${file}${note}`);
      }
    }
  }
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
