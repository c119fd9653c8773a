// The playground's QR panel: a GraphiQL plugin that shows, for the latest result holding a
// `qrCodeSvg` (createHealthLink's answer), the QR code at a size a phone can scan, what the link
// carries (flag, expiry with a countdown, label, manifest host; never its key), the passcode, and
// a button that opens the viewer. Served by the gateway like init.js, which wires it in.
//
// The SVG comes from the server, but it is only ever shown as an <img> of a data: URL: an image
// runs no script and loads nothing, whatever the document holds. It is never parsed into the page.
'use strict';

window.shlGatewayQrPanel = (function () {
  const h = React.createElement;

  // Also the plugin's name in GraphiQL's sidebar and in its saved "visible plugin".
  const TITLE = 'QR code';

  // Displayed side of the QR image in CSS pixels. A typical link is a version-15 symbol, 85
  // modules with its quiet zone: over 3 px a module, which a phone camera reads off a screen.
  const IMAGE_SIDE = 288;

  const SHLINK_MARKER = 'shlink:/';

  // The operation limits allow four QR codes per request.
  const MAX_SHARES = 4;
  // Deeper than any selection the gateway's depth limit lets through.
  const MAX_DEPTH = 32;

  // The latest result with a QR code, outside React: the fetcher records it and the panel
  // subscribes. `sequence` counts such results.
  let latest = null;
  const listeners = new Set();

  function subscribe(listener) {
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  function snapshot() {
    return latest;
  }

  // Called with every parsed result (introspection included); one without a QR code leaves the
  // panel as it was.
  function recordResult(result) {
    const shares = findShares(result && result.data, 0).slice(0, MAX_SHARES);
    if (shares.length === 0) {
      return;
    }
    latest = { sequence: latest ? latest.sequence + 1 : 1, shares };
    for (const listener of listeners) {
      listener();
    }
    // After GraphiQL has taken the result: a panel the user closed opens again
    // for a new QR code only.
    setTimeout(openPanel, 0);
  }

  // GraphiQL opens a plugin's pane from its sidebar button: selecting the
  // plugin through its context alone leaves the pane collapsed. So the panel is
  // opened as a person would, unless it is open already (the button then
  // offers to hide it).
  function openPanel() {
    const button = document.querySelector(`.graphiql-sidebar button[aria-label="Show ${TITLE}"]`);
    if (button) {
      button.click();
    }
  }

  // Every object of the answer with a `qrCodeSvg` string, turned into what the panel shows.
  function findShares(value, depth) {
    if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) {
      return [];
    }
    if (Array.isArray(value)) {
      return value.flatMap((item) => findShares(item, depth + 1));
    }
    if (typeof value.qrCodeSvg === 'string') {
      return [toShare(value)];
    }
    return Object.values(value).flatMap((item) => findShares(item, depth + 1));
  }

  function toShare(answer) {
    const link = findLink(answer, 0);
    return {
      imageSrc: svgDataUrl(answer.qrCodeSvg),
      passcode: typeof answer.passcode === 'string' ? answer.passcode : null,
      // Only an http(s) link is offered to open: the viewer URL the gateway and b.well answer.
      viewerUrl: link && /^https?:\/\//i.test(link) ? link : null,
      payload: link ? decodePayload(link) : null,
    };
  }

  // The link is `content[].attachment.url` in createHealthLink's answer; any string of the
  // answer that holds an SHL will do, so a differently shaped selection works too.
  function findLink(value, depth) {
    if (typeof value === 'string') {
      return value.includes(SHLINK_MARKER) ? value : null;
    }
    if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) {
      return null;
    }
    for (const [name, item] of Object.entries(value)) {
      const found = name === 'qrCodeSvg' ? null : findLink(item, depth + 1);
      if (found) {
        return found;
      }
    }
    return null;
  }

  function svgDataUrl(svg) {
    const bytes = new TextEncoder().encode(svg);
    let binary = '';
    // In slices: one argument per byte would overflow the call stack on a large document.
    for (let start = 0; start < bytes.length; start += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(start, start + 0x8000));
    }
    return `data:image/svg+xml;base64,${btoa(binary)}`;
  }

  // The payload is base64url JSON after `shlink:/`, bare or in a viewer URL's fragment. Only the
  // fields the panel shows leave this function: the key never reaches React's state or the page.
  function decodePayload(link) {
    const encoded = link.slice(link.indexOf(SHLINK_MARKER) + SHLINK_MARKER.length);
    let payload;
    try {
      if (!/^[A-Za-z0-9_-]+$/.test(encoded)) {
        throw new Error('not base64url');
      }
      const base64 = encoded.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (encoded.length % 4)) % 4);
      const bytes = Uint8Array.from(atob(base64), (char) => char.charCodeAt(0));
      payload = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    } catch {
      return { unreadable: true };
    }
    if (payload === null || typeof payload !== 'object') {
      return { unreadable: true };
    }
    return {
      flag: typeof payload.flag === 'string' ? payload.flag : '',
      exp: typeof payload.exp === 'number' && Number.isFinite(payload.exp) ? payload.exp : null,
      label: typeof payload.label === 'string' ? payload.label : null,
      manifestHost: hostOf(payload.url),
    };
  }

  function hostOf(url) {
    try {
      return new URL(url).host;
    } catch {
      return null;
    }
  }

  const FLAG_MEANINGS = {
    L: 'long-term: the manifest may change',
    P: 'a passcode is needed',
    U: 'one file, fetched directly',
  };

  function describeFlag(flag) {
    if (!flag) {
      return 'none';
    }
    const meanings = [...flag].map((letter) => FLAG_MEANINGS[letter]).filter(Boolean);
    return meanings.length > 0 ? `${flag}: ${meanings.join('; ')}` : flag;
  }

  function describeCountdown(expiresAtMs, now) {
    const seconds = Math.round((expiresAtMs - now) / 1000);
    const span = spell(Math.abs(seconds));
    return seconds >= 0 ? `in ${span}` : `expired ${span} ago`;
  }

  function spell(seconds) {
    const days = Math.floor(seconds / 86400);
    const hours = Math.floor((seconds % 86400) / 3600);
    const minutes = Math.floor((seconds % 3600) / 60);
    const parts = [];
    if (days) parts.push(`${days} d`);
    if (hours) parts.push(`${hours} h`);
    if (minutes) parts.push(`${minutes} min`);
    parts.push(`${seconds % 60} s`);
    return parts.join(' ');
  }

  // The current time, ticking every second while `ticking`: the countdown re-renders with it.
  function useNow(ticking) {
    const [now, setNow] = React.useState(Date.now);
    React.useEffect(() => {
      if (!ticking) {
        return undefined;
      }
      const timer = setInterval(() => setNow(Date.now()), 1000);
      return () => clearInterval(timer);
    }, [ticking]);
    return now;
  }

  function fact(label, field, ...value) {
    return [h('dt', { key: `${field}-label` }, label), h('dd', { key: field, 'data-field': field }, ...value)];
  }

  function expiry(payload, now) {
    if (payload.exp === null) {
      return 'not set in the link';
    }
    const at = payload.exp * 1000;
    return [
      h('time', { key: 'at', dateTime: new Date(at).toISOString() }, new Date(at).toLocaleString()),
      h('br', { key: 'break' }),
      h('span', { key: 'countdown', 'data-field': 'countdown', className: 'shl-qr-countdown' }, describeCountdown(at, now)),
    ];
  }

  function ShareCard({ share, now }) {
    const payload = share.payload;
    let facts;
    if (payload === null) {
      facts = [h('p', { key: 'hint', className: 'shl-qr-hint' }, 'Select content { attachment { url } } to see what the link carries.')];
    } else if (payload.unreadable) {
      facts = [h('p', { key: 'hint', className: 'shl-qr-hint' }, 'The link\u2019s payload is not base64url JSON.')];
    } else {
      facts = [
        ...fact('Label', 'label', payload.label === null ? 'none' : payload.label),
        ...fact('Flag', 'flag', describeFlag(payload.flag)),
        ...fact('Expires', 'expires', ...[].concat(expiry(payload, now))),
        ...fact('Manifest host', 'manifest-host', payload.manifestHost || 'unreadable'),
      ];
    }
    return h(
      'article',
      { className: 'shl-qr-share' },
      h('img', {
        className: 'shl-qr-image',
        src: share.imageSrc,
        alt: 'QR code of the SMART Health Link',
        width: IMAGE_SIDE,
        height: IMAGE_SIDE,
      }),
      h(
        'div',
        { className: 'shl-qr-details' },
        h('dl', null, ...fact('Passcode', 'passcode', share.passcode === null ? 'not selected' : share.passcode), ...facts),
        share.viewerUrl
          ? h(
              'button',
              {
                type: 'button',
                className: 'graphiql-button shl-qr-open',
                // A new tab that cannot reach back into the playground, and no referrer.
                onClick: () => window.open(share.viewerUrl, '_blank', 'noopener,noreferrer'),
              },
              'Open in the viewer',
            )
          : null,
      ),
    );
  }

  function QrPanel() {
    const state = React.useSyncExternalStore(subscribe, snapshot);
    const now = useNow(state !== null);
    const title = h('div', { className: 'graphiql-doc-explorer-title' }, TITLE);
    if (state === null) {
      return h(
        'section',
        { className: 'shl-qr-panel' },
        title,
        h('p', { className: 'shl-qr-hint' }, 'Run createHealthLink with qrCodeSvg selected (the example operation does): the link\u2019s QR code shows here.'),
      );
    }
    return h(
      'section',
      { className: 'shl-qr-panel', 'data-sequence': state.sequence },
      title,
      ...state.shares.map((share, index) => h(ShareCard, { key: `${state.sequence}-${index}`, share, now })),
    );
  }

  function QrIcon(props) {
    // Three finder patterns and a few modules, drawn on a 24-unit grid like GraphiQL's icons.
    return h(
      'svg',
      { ...props, viewBox: '0 0 24 24', fill: 'none', stroke: 'currentColor', strokeWidth: 1.5 },
      h('rect', { x: 3, y: 3, width: 7, height: 7 }),
      h('rect', { x: 14, y: 3, width: 7, height: 7 }),
      h('rect', { x: 3, y: 14, width: 7, height: 7 }),
      h('path', { d: 'M14 14h3v3h-3zM18 18h3v3h-3zM14 20h2M20 14v2' }),
    );
  }

  return {
    recordResult,
    plugin: { title: TITLE, icon: QrIcon, content: QrPanel },
  };
})();
