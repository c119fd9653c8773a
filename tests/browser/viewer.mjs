// Opens the SMART Health Links viewer page in headless Chromium the way a person would: reads the
// link, types a name (and the passcode when the page asks), waits for the decrypted summary and
// saves a screenshot of it.
//
//   node tests/browser/viewer.mjs <viewer-url-with-fragment> <passcode-or-empty> <screenshot.png>
//
// The passcode argument may list several passcodes separated by commas; they are tried in order,
// which checks the page's wrong-passcode path (for example `000000,123456`).
//
// Success: prints one line of JSON, {"sections":[...],"allergies":[...]}, and exits 0.
// Failure: prints the reason on stderr and exits 1. Any console error, CSP violation or uncaught
// page error counts as a failure, because the page holds a decryption key and must run clean
// under its strict Content-Security-Policy.
//
// Uses the system Chromium (see chromium.mjs): CHROMIUM_PATH overrides
// where it is; SHL_RECIPIENT sets the name typed into the form.
//
// SHL_EXPECT=refusal checks a link the page must refuse on its own (revoked, expired): the driver
// types nothing, waits for the page to settle, and prints {"state","status","expiryShown",
// "formShown"}; the 404 the page meets on the way is expected then.

import { DriverError, launchChromium, runDriver, watchedPage } from './chromium.mjs';

const USAGE =
  'usage: node tests/browser/viewer.mjs <viewer-url-with-fragment> <passcode-or-empty> <screenshot.png>';
const RECIPIENT = process.env.SHL_RECIPIENT || 'Browser test';
// The whole run, from launch to screenshot, must finish within this.
const TIMEOUT_MS = 20_000;

function parseArgs(argv) {
  if (argv.length !== 3 || !argv[0] || !argv[2]) {
    throw new DriverError(USAGE);
  }
  const [url, passcodes, screenshot] = argv;
  if (!/^https?:\/\//.test(url)) {
    throw new DriverError(`the viewer URL must be http(s)\n${USAGE}`);
  }
  return {
    url,
    passcodes: passcodes.split(',').map((p) => p.trim()).filter(Boolean),
    screenshot,
  };
}

// Chrome reports each non-2xx fetch as a console error. A 401 is the protocol's answer to a wrong
// passcode, which the page handles and this driver provokes on purpose; every other one counts.
function isExpectedNetworkError(message) {
  const expected = EXPECT_REFUSAL ? /status of (401|404)\b/ : /status of 401\b/;
  return /^Failed to load resource: the server responded with a/.test(message.text()) && expected.test(message.text());
}

const EXPECT_REFUSAL = process.env.SHL_EXPECT === 'refusal';

// The page as it stands once it stops loading: failed, or asking for input.
async function settledView(page, remaining) {
  await page.waitForFunction(
    () => ['failed', 'asking', 'rendered'].includes(document.documentElement.dataset.state),
    null,
    { timeout: remaining(), polling: 100 },
  );
  return page.evaluate(() => ({
    state: document.documentElement.dataset.state,
    status: document.getElementById('status').hidden ? '' : document.getElementById('status').textContent.trim(),
    expiryShown: !document.getElementById('link-expiry').hidden,
    formShown: !document.getElementById('unlock').hidden,
  }));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const deadline = Date.now() + TIMEOUT_MS;
  const remaining = () => Math.max(1, deadline - Date.now());
  const browser = await launchChromium(remaining());
  try {
    const { page, problems } = await watchedPage(browser, { viewport: { width: 820, height: 1000 } }, isExpectedNetworkError);

    try {
      await page.goto(args.url, { waitUntil: 'load', timeout: remaining() });
      if (EXPECT_REFUSAL) {
        const view = await settledView(page, remaining);
        await page.screenshot({ path: args.screenshot, fullPage: true, timeout: remaining() });
        if (problems.length > 0) {
          throw new DriverError(`the page ran with errors:\n  ${problems.join('\n  ')}`);
        }
        return view;
      }
      await unlock(page, args.passcodes, remaining);
      await page.waitForSelector('#allergies > li', { state: 'visible', timeout: remaining() });

      const summary = await page.evaluate(() => {
        const text = (node) => (node ? node.textContent.replace(/\s+/g, ' ').trim() : '');
        return {
          sections: [...document.querySelectorAll('#document .ips-section > .section-title')]
            .filter((heading) => heading.tagName === 'H2')
            .map(text),
          allergies: [...document.querySelectorAll('#allergies > li')].map((item) => {
            const details = text(item.querySelector('.item-details'));
            const title = text(item.querySelector('.item-title')) || text(item);
            return details ? `${title} (${details})` : title;
          }),
          // innerText, not textContent: what the reader sees, line breaks included.
          story: [...document.querySelectorAll('#patient-story .story-paragraph')].map((p) => p.innerText),
          pdfs: [...document.querySelectorAll('#shared-pdfs li')].map((item) => ({
            title: text(item.querySelector('.item-title')),
            blob: [...item.querySelectorAll('a.pdf-link')].every((a) => a.href.startsWith('blob:')),
            download: (item.querySelector('a[download]') || {}).download || '',
          })),
        };
      });
      // Give late errors (a blocked request, an exception in a callback) a moment to surface.
      await page.waitForTimeout(250);
      await page.screenshot({ path: args.screenshot, fullPage: true, timeout: remaining() });

      if (problems.length > 0) {
        throw new DriverError(`the page ran with errors:\n  ${problems.join('\n  ')}`);
      }
      return summary;
    } catch (error) {
      // A picture of the failure helps more than the message alone.
      await page.screenshot({ path: args.screenshot, fullPage: true, timeout: 5_000 }).catch(() => {});
      if (error instanceof DriverError || problems.length === 0) {
        throw error;
      }
      throw new DriverError(`${error.message}\nthe page ran with errors:\n  ${problems.join('\n  ')}`);
    }
  } finally {
    await browser.close().catch(() => {});
  }
}

// Answers the page's form until it shows the summary or gives up.
async function unlock(page, passcodes, remaining) {
  const queue = [...passcodes];
  for (let attempt = 1; ; attempt += 1) {
    // `data-state` on <html>: loading, asking, opening, rendered or failed. While "asking" after
    // a submit, an error notice or a field error means the attempt was answered.
    await page.waitForFunction(
      () => {
        const state = document.documentElement.dataset.state;
        if (state === 'rendered' || state === 'failed') {
          return true;
        }
        if (state !== 'asking') {
          return false;
        }
        const status = document.getElementById('status');
        const fieldError = [...document.querySelectorAll('.field-error')].some((node) => !node.hidden);
        return status.hidden || status.classList.contains('notice-error') || fieldError;
      },
      null,
      { timeout: remaining(), polling: 100 },
    );

    const view = await page.evaluate(() => ({
      state: document.documentElement.dataset.state,
      status: document.getElementById('status').hidden ? '' : document.getElementById('status').textContent.trim(),
      fieldErrors: [...document.querySelectorAll('.field-error')]
        .filter((node) => !node.hidden)
        .map((node) => node.textContent.trim()),
      wantsPasscode: !document.getElementById('passcode-field').hidden,
    }));

    if (view.state === 'rendered') {
      return;
    }
    if (view.state === 'failed') {
      throw new DriverError(`the page gave up: ${view.status}`);
    }
    if (view.fieldErrors.length > 0) {
      throw new DriverError(`the page rejected the form: ${view.fieldErrors.join(' ')}`);
    }
    if (view.status) {
      process.stderr.write(`attempt ${attempt - 1}: ${view.status}\n`);
    }

    let passcode = '';
    if (view.wantsPasscode) {
      if (queue.length === 0) {
        throw new DriverError(
          view.status
            ? `no passcode left to try; the page says: ${view.status}`
            : 'the link needs a passcode and none was given',
        );
      }
      passcode = queue.shift();
    } else if (view.status) {
      // Without a passcode there is nothing different to try again with.
      throw new DriverError(`the page says: ${view.status}`);
    }

    await page.fill('#recipient', RECIPIENT, { timeout: remaining() });
    if (view.wantsPasscode) {
      await page.fill('#passcode', passcode, { timeout: remaining() });
    }
    await page.click('#open', { timeout: remaining() });
  }
}

runDriver('viewer.mjs', TIMEOUT_MS, main);
