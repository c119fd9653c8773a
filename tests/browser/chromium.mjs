// What the browser drivers share: the system Chromium (playwright-core never downloads a browser;
// CHROMIUM_PATH overrides where it is), a page whose console errors, page errors and CSP
// violations are collected as problems, and the process's run under a watchdog.

import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// A failure the driver explains itself: printed as its message, without a stack.
export class DriverError extends Error {}

export function launchChromium(timeout) {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout });
}

// A page in a new context of `browser`. Every console error `isExpected` does not excuse, every
// uncaught page error and every CSP violation goes into `problems`: the pages under test hold
// secrets and must run clean under their strict Content-Security-Policy.
export async function watchedPage(browser, contextOptions, isExpected = () => false) {
  const problems = [];
  const context = await browser.newContext(contextOptions);
  // Runs before the page's own script. Chrome logs violations to the console as well; this
  // catches the ones it reports only as events.
  await context.addInitScript(() => {
    document.addEventListener(
      'securitypolicyviolation',
      (event) => {
        console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || 'inline code'}`);
      },
      true,
    );
  });
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error' && !isExpected(message)) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  return { context, page, problems };
}

// Runs `main`, prints its summary as one line of JSON and exits 0; on failure prints the reason
// on stderr and exits 1. A hung browser must not hang the caller: the watchdog ends the process
// `timeoutMs` plus 10 s after the start.
export function runDriver(name, timeoutMs, main) {
  const watchdog = setTimeout(() => {
    process.stderr.write(`${name}: gave up after ${timeoutMs + 10_000} ms\n`);
    process.exit(1);
  }, timeoutMs + 10_000);
  watchdog.unref();
  main().then(
    (summary) => {
      process.stdout.write(`${JSON.stringify(summary)}\n`);
      process.exit(0);
    },
    (error) => {
      process.stderr.write(`${name}: ${error instanceof DriverError ? error.message : error.stack || error}\n`);
      process.exit(1);
    },
  );
}
