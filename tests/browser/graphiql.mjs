// Drives the gateway's GraphiQL playground in headless Chromium the way a person would: runs the
// example createHealthLink operation and reads what the QR panel then shows, including Chromium's
// own rendering of the QR image (as a PNG, for the caller to decode with a decoder of its own).
//
//   node tests/browser/graphiql.mjs <graphiql-url> <screenshot.png>
//
// SHL_TOKEN (a whole `Bearer ...` value), when set, is typed into the Headers tab first; when
// unset, the run relies on what the page filled in there (demo mode). It comes from the
// environment, not the command line, which other users of the machine can list.
//
// Success: prints one line of JSON and exits 0:
//   headersPrefilled  the Headers tab held a demo token (`Bearer dev-...`) when the page loaded
//   link, passcode    createHealthLink's answer, as the result pane shows it
//   panel             {text, html, facts: {passcode, label, flag, expires, countdown, ...}}
//   image             {src: scheme of the img's URL, width, height (CSS px), uncovered: nothing
//                     clips or covers it, png (base64)}
//   countdown         {before, after}: the countdown read twice, 2 s apart
//   opened            {url, withoutOpener}: the tab the panel's viewer button opened
// Failure: prints the reason on stderr and exits 1. Any console error, CSP violation or uncaught
// page error counts as a failure: the playground holds a bearer token and must run clean under
// its strict Content-Security-Policy.
//
// Uses the system Chromium (see chromium.mjs); CHROMIUM_PATH overrides
// where it is.

import { DriverError, launchChromium, runDriver, watchedPage } from './chromium.mjs';

const USAGE = 'usage: node tests/browser/graphiql.mjs <graphiql-url> <screenshot.png>';
const TOKEN = process.env.SHL_TOKEN || '';
// The whole run, from launch to screenshot, must finish within this.
const TIMEOUT_MS = 30_000;

function parseArgs(argv) {
  if (argv.length !== 2 || !/^https?:\/\//.test(argv[0]) || !argv[1]) {
    throw new DriverError(USAGE);
  }
  return { url: argv[0], screenshot: argv[1] };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const deadline = Date.now() + TIMEOUT_MS;
  const remaining = () => Math.max(1, deadline - Date.now());
  const browser = await launchChromium(remaining());
  try {
    // Wide enough for GraphiQL's three panes; scale 1, so the QR is read at its CSS size.
    const { context, page, problems } = await watchedPage(browser, { viewport: { width: 1400, height: 1000 }, deviceScaleFactor: 1 });

    try {
      await page.goto(args.url, { waitUntil: 'load', timeout: remaining() });
      const headersPrefilled = await fillHeaders(page, remaining);

      await page.click('.graphiql-execute-button', { timeout: remaining() });
      // Nothing here opens the panel: it must open by itself for a result with a QR code.
      const image = page.locator('.shl-qr-panel .shl-qr-image');
      await image.waitFor({ state: 'visible', timeout: remaining() });
      await page.waitForFunction(
        () => {
          const img = document.querySelector('.shl-qr-panel .shl-qr-image');
          return img && img.complete && img.naturalWidth > 0;
        },
        null,
        { timeout: remaining(), polling: 100 },
      );

      const answer = await resultAnswer(page, remaining);
      const panel = await page.evaluate(() => {
        const node = document.querySelector('.shl-qr-panel');
        const facts = {};
        for (const fact of node.querySelectorAll('[data-field]')) {
          facts[fact.dataset.field] = fact.innerText.replace(/\s+/g, ' ').trim();
        }
        return { text: node.innerText, html: node.outerHTML, facts };
      });
      const shown = await page.evaluate(() => {
        const img = document.querySelector('.shl-qr-panel .shl-qr-image');
        const box = img.getBoundingClientRect();
        // What a person sees: the image itself is hit at its centre and near each corner, so it
        // is neither clipped by a collapsed pane nor covered by anything.
        const inset = 2;
        const points = [
          [box.left + box.width / 2, box.top + box.height / 2],
          [box.left + inset, box.top + inset],
          [box.right - inset, box.top + inset],
          [box.left + inset, box.bottom - inset],
          [box.right - inset, box.bottom - inset],
        ];
        const uncovered = points.every(([x, y]) => document.elementFromPoint(x, y) === img);
        return { src: img.src.slice(0, img.src.indexOf(',')), width: box.width, height: box.height, uncovered };
      });
      const png = await image.screenshot({ timeout: remaining() });

      const before = panel.facts.countdown;
      await page.waitForTimeout(2_100);
      const after = await page.locator('.shl-qr-panel [data-field="countdown"]').innerText({ timeout: remaining() });

      const opened = await openViewer(context, page, remaining);

      await page.screenshot({ path: args.screenshot, timeout: remaining() });
      if (problems.length > 0) {
        throw new DriverError(`the page ran with errors:\n  ${problems.join('\n  ')}`);
      }
      return {
        headersPrefilled,
        link: answer.content[0].attachment.url,
        passcode: answer.passcode,
        panel,
        image: { ...shown, png: png.toString('base64') },
        countdown: { before, after: after.trim() },
        opened,
      };
    } catch (error) {
      // A picture of the failure helps more than the message alone.
      await page.screenshot({ path: args.screenshot, timeout: 5_000 }).catch(() => {});
      if (error instanceof DriverError || problems.length === 0) {
        throw error;
      }
      throw new DriverError(`${error.message}\nthe page ran with errors:\n  ${problems.join('\n  ')}`);
    }
  } finally {
    await browser.close().catch(() => {});
  }
}

// The Headers tab's editor is the CodeMirror holding an `Authorization` entry (the placeholder or
// demo mode's token). Reports whether that was a demo token, then types SHL_TOKEN when given.
// CodeMirror's own API sets the text: typing braces would trip its bracket auto-closing.
async function fillHeaders(page, remaining) {
  await page.waitForFunction(
    () => [...document.querySelectorAll('.CodeMirror')].some((el) => el.CodeMirror.getValue().includes('"Authorization"')),
    null,
    { timeout: remaining(), polling: 100 },
  );
  return page.evaluate((token) => {
    const editor = [...document.querySelectorAll('.CodeMirror')]
      .map((el) => el.CodeMirror)
      .find((cm) => cm.getValue().includes('"Authorization"'));
    const prefilled = /"Bearer dev-[A-Za-z0-9_-]+"/.test(editor.getValue());
    if (token) {
      editor.setValue(JSON.stringify({ Authorization: token }, null, 2));
    }
    return prefilled;
  }, TOKEN);
}

// createHealthLink's answer as the result pane shows it.
async function resultAnswer(page, remaining) {
  await page.waitForFunction(
    () => document.querySelector('.result-window .CodeMirror').CodeMirror.getValue().trim() !== '',
    null,
    { timeout: remaining(), polling: 100 },
  );
  const text = await page.evaluate(() => document.querySelector('.result-window .CodeMirror').CodeMirror.getValue());
  const result = JSON.parse(text);
  if (!result.data || !result.data.createHealthLink) {
    throw new DriverError(`the operation failed: ${JSON.stringify(result.errors || result)}`);
  }
  return result.data.createHealthLink;
}

// Clicks the panel's viewer button and reports the tab it opened.
async function openViewer(context, page, remaining) {
  const [tab] = await Promise.all([
    context.waitForEvent('page', { timeout: remaining() }),
    page.click('.shl-qr-panel .shl-qr-open', { timeout: remaining() }),
  ]);
  await tab.waitForLoadState('domcontentloaded', { timeout: remaining() });
  const opened = { url: tab.url(), withoutOpener: await tab.evaluate(() => window.opener === null) };
  await tab.close();
  return opened;
}

runDriver('graphiql.mjs', TIMEOUT_MS, main);
