// Mounts GraphiQL on the playground page. It lives in its own file, served by
// the gateway, so the page can forbid inline script (CSP `script-src 'self'`).
'use strict';

(function () {
  // Same origin as the page: the CSP only allows `connect-src 'self'`, and a
  // bearer token pasted here must never be sent anywhere else.
  const ENDPOINT = '/graphql';

  // Demo mode's token as GraphiQL headers, answered only to a loopback
  // listener's own pages (204 otherwise); see graphiql.rs.
  const DEMO_HEADERS = '/graphiql/demo-headers';

  const TOKEN_PLACEHOLDER = 'Bearer <paste your token>';

  const PLACEHOLDER_HEADERS = JSON.stringify({ Authorization: TOKEN_PLACEHOLDER }, null, 2);

  const PASTE_HINT = '# Paste your token in the Headers tab below, then run.';
  const DEMO_HINT = "# Demo mode: the Headers tab below holds this gateway's token. Run it.";

  const EXAMPLE_OPERATION = `# No passcode in the variables: the gateway makes one, and the
# QR code panel opens with the link's QR code once it answers.
mutation CreateHealthLink($input: CreateHealthLinkInput!) {
  createHealthLink(input: $input) {
    id
    identifier { system value }
    description
    resourceType
    date
    status
    subject { reference }
    context { period { start end } }
    content { attachment { contentType url title } }
    category { coding { system code } }
    passcode
    qrCodeSvg
  }
}
`;

  // No passcode given, so the gateway generates one and returns it.
  const EXAMPLE_VARIABLES = JSON.stringify(
    {
      input: {
        label: 'Health Records',
        resources: [{ resourceType: 'Patient' }, { resourceType: 'AllergyIntolerance' }],
      },
    },
    null,
    2,
  );

  function requestHeaders(editorHeaders) {
    const headers = new Headers();
    for (const [name, value] of Object.entries(editorHeaders || {})) {
      // The untouched placeholder is not a credential; sending it would only
      // turn schema introspection into an authentication error.
      if (name.toLowerCase() === 'authorization' && value === TOKEN_PLACEHOLDER) {
        continue;
      }
      headers.set(name, String(value));
    }
    // The body is always JSON, whatever the header editor says.
    headers.set('content-type', 'application/json');
    if (!headers.has('accept')) {
      headers.set('accept', 'application/graphql-response+json, application/json');
    }
    return headers;
  }

  async function fetchResult(graphQLParams, options) {
    const response = await fetch(ENDPOINT, {
      method: 'POST',
      headers: requestHeaders(options && options.headers),
      body: JSON.stringify(graphQLParams),
      credentials: 'same-origin',
    });
    const text = await response.text();
    try {
      return JSON.parse(text);
    } catch {
      // A proxy or the server answered with something other than GraphQL
      // JSON: show it as an error rather than leaving the result pane blank.
      const detail = text.trim() || response.statusText;
      return { errors: [{ message: `HTTP ${response.status}: ${detail}` }] };
    }
  }

  // Every result also goes to the QR panel, which keeps the latest one holding
  // a `qrCodeSvg`.
  async function fetcher(graphQLParams, options) {
    const result = await fetchResult(graphQLParams, options);
    window.shlGatewayQrPanel.recordResult(result);
    return result;
  }

  // Demo mode's headers, or null: then the placeholder is shown. Never stored
  // (no-store, and GraphiQL keeps headers out of local storage).
  async function demoHeaders() {
    try {
      const response = await fetch(DEMO_HEADERS, { credentials: 'same-origin', cache: 'no-store' });
      if (response.status !== 200) {
        return null;
      }
      return JSON.stringify(await response.json(), null, 2);
    } catch {
      // Without it the playground still works: the token is pasted by hand.
      return null;
    }
  }

  // GraphiQL 3 fills the variables editor from its saved variables, not from
  // the default or the restored tab, so a first visit saves the example under
  // GraphiQL's own keys (stable within the pinned release). Later visits keep
  // whatever the user has since typed.
  function exampleVariables() {
    try {
      if (localStorage.getItem('graphiql:tabState') === null) {
        localStorage.setItem('graphiql:variables', EXAMPLE_VARIABLES);
      }
      return {};
    } catch {
      // Storage is disabled: nothing is kept between visits anyway.
      return { variables: EXAMPLE_VARIABLES };
    }
  }

  async function mount() {
    const demo = await demoHeaders();
    const headers = demo || PLACEHOLDER_HEADERS;
    const operation = `${demo ? DEMO_HINT : PASTE_HINT}\n${EXAMPLE_OPERATION}`;
    const qrPanel = window.shlGatewayQrPanel;
    const root = ReactDOM.createRoot(document.getElementById('graphiql'));
    root.render(
      React.createElement(GraphiQL, {
        fetcher,
        defaultTabs: [{ query: operation, variables: EXAMPLE_VARIABLES, headers }],
        ...exampleVariables(),
        // Headers are not written to local storage (tokens would outlive the
        // session there), so tabs restored on reload get these again.
        defaultHeaders: headers,
        shouldPersistHeaders: false,
        isHeadersEditorEnabled: true,
        defaultEditorToolsVisibility: 'headers',
        plugins: [qrPanel.plugin],
      }),
    );
  }

  mount();
})();
