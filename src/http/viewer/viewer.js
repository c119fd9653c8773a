// SMART Health Links viewer.
//
// The link, with its AES key, sits in this page's URL fragment, which browsers never send to a
// server. Everything below is written so that the key and the health data stay in this tab:
// requests go only to this origin (the Content-Security-Policy enforces that too), carry no
// referrer and no cookies, nothing is logged, and FHIR data only ever enters the page as text
// nodes, never as HTML. Exception messages are not shown either: some (JSON.parse, for one) quote
// their input, which here may be the key or the health data.
'use strict';

(() => {
  // Limits from the protocol and from what the gateway accepts.
  const RECIPIENT_MAX_CHARS = 100;
  const PASSCODE_PATTERN = /^[0-9]{6}$/;
  // Ask the server to embed files up to this size in the manifest answer: it saves a second
  // request (and a short-lived download ticket) per file, while keeping that answer bounded.
  const EMBEDDED_LENGTH_MAX = 1024 * 1024;
  const REQUEST_TIMEOUT_MS = 30000;
  // A deflated JWE could expand to anything: stop well before the tab runs out of memory.
  const INFLATED_MAX_BYTES = 64 * 1024 * 1024;
  const RECIPIENT_STORAGE_KEY = 'shl-viewer.recipient';
  const FHIR_JSON = 'application/fhir+json';

  const LOINC = 'http://loinc.org';
  const ALLERGY_SECTION_CODE = '48765-2';
  const BLOOD_PRESSURE_CODES = new Set(['85354-9', '55284-4']);
  const SYSTOLIC_CODE = '8480-6';
  const DIASTOLIC_CODE = '8462-4';
  const ABSENT_UNKNOWN_SYSTEM = 'http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips';
  // Maps, not object literals: keys come from the document, and "constructor" must find nothing.
  const EMPTY_REASON_TEXT = new Map([
    ['withheld', 'Withheld by the patient'],
    ['unavailable', 'None on file'],
  ]);

  const ui = {
    root: document.documentElement,
    label: document.getElementById('link-label'),
    expiry: document.getElementById('link-expiry'),
    status: document.getElementById('status'),
    form: document.getElementById('unlock'),
    recipient: document.getElementById('recipient'),
    recipientError: document.getElementById('recipient-error'),
    passcodeField: document.getElementById('passcode-field'),
    passcode: document.getElementById('passcode'),
    passcodeError: document.getElementById('passcode-error'),
    open: document.getElementById('open'),
    document: document.getElementById('document'),
  };

  // An error whose message is written for the person holding the phone. `final` means no retry
  // can help (the link is gone, broken or locked), so the form goes away.
  class ViewerError extends Error {
    constructor(message, { final = false, retryAfter = 0 } = {}) {
      super(message);
      this.name = 'ViewerError';
      this.final = final;
      this.retryAfter = retryAfter;
    }
  }

  // The recipient the viewer's own liveness check names (see `mayBeLive`).
  const PROBE_RECIPIENT = 'Viewer: checking the link is active';
  const NOT_ACTIVE =
    'This link is no longer active (expired, revoked or locked). Ask the person who shared it for a new one.';

  // ---------------------------------------------------------------------------------------------
  // Page state

  // `data-state` on <html> lets automated checks (and CSS) know where the page is:
  // loading, asking, opening, rendered or failed.
  function setState(state) {
    ui.root.dataset.state = state;
  }

  function showStatus(message, kind) {
    ui.status.textContent = message;
    ui.status.className = `notice notice-${kind}`;
    ui.status.hidden = false;
  }

  function hideStatus() {
    ui.status.hidden = true;
    ui.status.textContent = '';
  }

  function fail(message) {
    ui.form.hidden = true;
    // A link that cannot be opened is not "valid until" anything.
    ui.expiry.hidden = true;
    showStatus(message, 'error');
    setState('failed');
  }

  // ---------------------------------------------------------------------------------------------
  // Bytes

  function base64UrlToBytes(text) {
    if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
      throw new ViewerError('malformed base64url');
    }
    const base64 = text.replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes;
  }

  function asciiBytes(text) {
    return new TextEncoder().encode(text);
  }

  function utf8Text(bytes) {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  }

  // ---------------------------------------------------------------------------------------------
  // The link

  // Accepts `#shlink:/<payload>` (the usual form), a fragment holding a whole link that itself
  // ends in `#shlink:/...`, and a bare payload.
  function readLink(fragment) {
    let text = fragment.replace(/^#/, '');
    if (text.includes('%')) {
      try {
        text = decodeURIComponent(text);
      } catch {
        throw new ViewerError('This link is damaged: its address could not be read.', { final: true });
      }
    }
    const marker = text.indexOf('shlink:/');
    if (marker >= 0) {
      text = text.slice(marker + 'shlink:/'.length);
    }
    if (text === '') {
      throw new ViewerError(
        'No health link was given. Open this page by scanning the QR code or following the link you received.',
        { final: true },
      );
    }

    let payload;
    try {
      payload = JSON.parse(utf8Text(base64UrlToBytes(text)));
    } catch {
      throw new ViewerError('This link is damaged and cannot be opened. Check that it was copied in full.', {
        final: true,
      });
    }
    return checkPayload(payload);
  }

  function checkPayload(payload) {
    const broken = (what) =>
      new ViewerError(`This link cannot be opened: ${what}.`, { final: true });
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
      throw broken('it holds no link data');
    }
    if (payload.v !== undefined && payload.v !== 1) {
      throw broken('it uses a newer version of the format than this viewer knows');
    }

    let url;
    try {
      url = new URL(payload.url);
    } catch {
      throw broken('its server address is missing or invalid');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw broken('its server address is not a web address');
    }

    let keyBytes;
    try {
      keyBytes = typeof payload.key === 'string' && payload.key.length === 43
        ? base64UrlToBytes(payload.key)
        : null;
    } catch {
      keyBytes = null;
    }
    if (!keyBytes || keyBytes.length !== 32) {
      throw broken('its key is missing or damaged');
    }

    const flag = payload.flag === undefined ? '' : payload.flag;
    if (typeof flag !== 'string' || !/^L?P?U?$/.test(flag) || (flag.includes('P') && flag.includes('U'))) {
      throw broken('its options are not valid');
    }

    let exp = null;
    if (payload.exp !== undefined) {
      if (typeof payload.exp !== 'number' || !Number.isFinite(payload.exp)) {
        throw broken('its expiry date is not valid');
      }
      exp = payload.exp;
    }

    const label = typeof payload.label === 'string' ? payload.label.slice(0, 80) : '';
    return {
      url,
      keyBytes,
      exp,
      label,
      passcode: flag.includes('P'),
      direct: flag.includes('U'),
    };
  }

  function formatInstant(epochSeconds) {
    return new Date(epochSeconds * 1000).toLocaleString(undefined, {
      dateStyle: 'medium',
      timeStyle: 'short',
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Talking to the server

  // Every request: this origin only (checked before, enforced by the CSP), no cookies, no
  // referrer (the page URL holds the key), never cached.
  async function request(url, init) {
    let response;
    try {
      response = await fetch(url, {
        ...init,
        credentials: 'omit',
        referrerPolicy: 'no-referrer',
        cache: 'no-store',
        redirect: 'error',
        // Older browsers lack AbortSignal.timeout; they simply wait as long as the network does.
        signal: typeof AbortSignal.timeout === 'function' ? AbortSignal.timeout(REQUEST_TIMEOUT_MS) : undefined,
      });
    } catch {
      throw new ViewerError('Could not reach the server. Check your connection and try again.');
    }
    return response;
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }

  async function readText(response) {
    try {
      return await response.text();
    } catch {
      throw new ViewerError('Could not reach the server. Check your connection and try again.');
    }
  }

  // Retry-After is either seconds or an HTTP date.
  function retryAfterSeconds(response) {
    const value = (response.headers.get('Retry-After') || '').trim();
    if (/^[0-9]+$/.test(value)) {
      return Math.max(1, Number(value));
    }
    const date = Date.parse(value);
    if (!Number.isNaN(date)) {
      return Math.max(1, Math.ceil((date - Date.now()) / 1000));
    }
    return 30;
  }

  // The answers shared by the manifest, file and direct endpoints.
  async function errorFor(response) {
    switch (response.status) {
      case 401: {
        const body = await readJson(response);
        const left = body && Number.isInteger(body.remainingAttempts) ? body.remainingAttempts : null;
        if (left === 0) {
          return new ViewerError(
            'Wrong passcode, and no attempts are left: the link is now locked. Ask the person who shared it for a new one.',
            { final: true },
          );
        }
        if (left === null) {
          return new ViewerError('Wrong passcode. Check it and try again.');
        }
        return new ViewerError(
          `Wrong passcode, ${left} ${left === 1 ? 'attempt' : 'attempts'} left.`,
        );
      }
      case 404:
        return new ViewerError(NOT_ACTIVE, { final: true });
      case 429: {
        const seconds = retryAfterSeconds(response);
        return new ViewerError(`Too many attempts, try again in ${seconds} s.`, { retryAfter: seconds });
      }
      case 400:
        return new ViewerError('The request was refused by the server. Check your name and the passcode, then try again.');
      default:
        if (response.status >= 500) {
          return new ViewerError(`The server had a problem (HTTP ${response.status}). Try again in a moment.`);
        }
        return new ViewerError(`The request was refused by the server (HTTP ${response.status}).`);
    }
  }

  function sameOrigin(url) {
    return url.origin === window.location.origin;
  }

  // Manifest mode: POST the recipient (and passcode), get the list of files.
  async function fetchManifestFiles(link, recipient, passcode) {
    const body = { recipient, embeddedLengthMax: EMBEDDED_LENGTH_MAX };
    if (link.passcode) {
      body.passcode = passcode;
    }
    const response = await request(link.url.href, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
    });
    if (response.status !== 200) {
      throw await errorFor(response);
    }
    const manifest = await readJson(response);
    if (!manifest || typeof manifest !== 'object' || !Array.isArray(manifest.files)) {
      throw new ViewerError('The server sent an answer this viewer does not understand.');
    }
    if (manifest.files.length === 0) {
      throw new ViewerError(
        manifest.status === 'no-longer-valid' ? NOT_ACTIVE : 'This link holds no documents.',
        { final: true },
      );
    }

    const jwes = [];
    for (const file of manifest.files) {
      if (!file || typeof file !== 'object' || file.contentType !== FHIR_JSON) {
        continue;
      }
      if (typeof file.embedded === 'string') {
        jwes.push(file.embedded);
      } else if (typeof file.location === 'string') {
        jwes.push(await fetchLocation(link, file.location));
      }
    }
    if (jwes.length === 0) {
      throw new ViewerError('This link holds no document this viewer can show.', { final: true });
    }
    return { jwes, status: manifest.status };
  }

  async function fetchLocation(link, location) {
    let url;
    try {
      url = new URL(location, link.url);
    } catch {
      throw new ViewerError('The server sent an invalid file address.');
    }
    if (!sameOrigin(url)) {
      throw new ViewerError('The document is stored on another server, which this viewer does not contact.', {
        final: true,
      });
    }
    const response = await request(url.href, { method: 'GET', headers: { Accept: 'application/jose' } });
    if (response.status !== 200) {
      throw await errorFor(response);
    }
    return readText(response);
  }

  // Direct mode (flag U): one GET returns the encrypted file itself.
  async function fetchDirectFile(link, recipient) {
    const url = new URL(link.url.href);
    url.searchParams.set('recipient', recipient);
    const response = await request(url.href, { method: 'GET', headers: { Accept: 'application/jose' } });
    if (response.status !== 200) {
      throw await errorFor(response);
    }
    return { jwes: [await readText(response)], status: null };
  }

  // ---------------------------------------------------------------------------------------------
  // Decryption: JWE compact serialization, alg "dir", enc "A256GCM", optional zip "DEF".

  // Decryption and parsing failures are final: the same key and file fail the same way again.
  const UNREADABLE = 'The document could not be decrypted: the link may be damaged or out of date.';
  const unreadable = () => new ViewerError(UNREADABLE, { final: true });

  async function decryptJwe(compact, key) {
    const parts = compact.trim().split('.');
    if (parts.length !== 5 || parts[1] !== '') {
      throw unreadable();
    }
    const [encodedHeader, , encodedIv, encodedCiphertext, encodedTag] = parts;

    let header;
    let iv;
    let ciphertext;
    let tag;
    try {
      header = JSON.parse(utf8Text(base64UrlToBytes(encodedHeader)));
      iv = base64UrlToBytes(encodedIv);
      ciphertext = base64UrlToBytes(encodedCiphertext);
      tag = base64UrlToBytes(encodedTag);
    } catch {
      throw unreadable();
    }
    if (
      !header || header.alg !== 'dir' || header.enc !== 'A256GCM' || iv.length !== 12 ||
      tag.length !== 16 || (header.zip !== undefined && header.zip !== 'DEF') ||
      (header.crit !== undefined)
    ) {
      throw new ViewerError('The document is encrypted in a way this viewer does not support.', { final: true });
    }

    const sealed = new Uint8Array(ciphertext.length + tag.length);
    sealed.set(ciphertext, 0);
    sealed.set(tag, ciphertext.length);

    let plaintext;
    try {
      plaintext = new Uint8Array(
        await crypto.subtle.decrypt(
          // The protected header, exactly as encoded, is the additional authenticated data.
          { name: 'AES-GCM', iv, additionalData: asciiBytes(encodedHeader), tagLength: 128 },
          key,
          sealed,
        ),
      );
    } catch {
      throw unreadable();
    }
    if (header.zip === 'DEF') {
      plaintext = await inflateRaw(plaintext);
    }
    try {
      return utf8Text(plaintext);
    } catch {
      throw unreadable();
    }
  }

  async function inflateRaw(bytes) {
    if (typeof DecompressionStream !== 'function') {
      throw new ViewerError('This browser cannot open compressed documents. Try a current browser.', {
        final: true,
      });
    }
    const reader = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate-raw')).getReader();
    const chunks = [];
    let total = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          break;
        }
        total += value.length;
        if (total > INFLATED_MAX_BYTES) {
          await reader.cancel();
          throw new ViewerError('The document is too large to show.', { final: true });
        }
        chunks.push(value);
      }
    } catch (error) {
      if (error instanceof ViewerError) {
        throw error;
      }
      throw unreadable();
    }
    const out = new Uint8Array(total);
    let offset = 0;
    for (const chunk of chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Reading FHIR values (all return plain strings; nothing here is ever parsed as HTML)

  const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);
  const list = (value) => (Array.isArray(value) ? value : []);
  const str = (value) => (typeof value === 'string' ? value.trim() : '');

  function humanizeCode(code) {
    const text = code.replace(/[-_]+/g, ' ').trim();
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function codingText(coding) {
    if (!isObject(coding)) {
      return '';
    }
    const display = str(coding.display);
    if (display) {
      return display;
    }
    const code = str(coding.code);
    // IPS "absent or unknown" codes such as no-known-food-allergies read well as words.
    if (code && coding.system === ABSENT_UNKNOWN_SYSTEM) {
      return humanizeCode(code);
    }
    return code;
  }

  function conceptText(concept) {
    if (!isObject(concept)) {
      return '';
    }
    const text = str(concept.text);
    if (text) {
      return text;
    }
    const codings = list(concept.coding);
    for (const coding of codings) {
      if (str(coding && coding.display)) {
        return codingText(coding);
      }
    }
    for (const coding of codings) {
      const fallback = codingText(coding);
      if (fallback) {
        return fallback;
      }
    }
    return '';
  }

  function hasCode(concept, system, codes) {
    return list(concept && concept.coding).some(
      (coding) => isObject(coding) && (!system || coding.system === system) && codes.has(coding.code),
    );
  }

  // FHIR dates are often partial (2015, 2015-03). Show them as written; for date-times show the
  // date and the local time of the record rather than converting to this browser's time zone.
  function fhirDate(value) {
    const text = str(value);
    const match = /^(\d{4}(?:-\d{2}(?:-\d{2})?)?)(?:T(\d{2}:\d{2}))?/.exec(text);
    if (!match) {
      return text;
    }
    return match[2] && match[2] !== '00:00' ? `${match[1]} ${match[2]}` : match[1];
  }

  function periodText(period) {
    if (!isObject(period)) {
      return '';
    }
    const start = fhirDate(period.start);
    const end = fhirDate(period.end);
    if (start && end) {
      return `${start} to ${end}`;
    }
    if (start) {
      return `since ${start}`;
    }
    return end ? `until ${end}` : '';
  }

  function numberText(value) {
    return typeof value === 'number' && Number.isFinite(value) ? String(value) : '';
  }

  function quantityText(quantity) {
    if (!isObject(quantity)) {
      return '';
    }
    const value = numberText(quantity.value);
    if (!value) {
      return '';
    }
    const unit = str(quantity.unit) || str(quantity.code);
    const comparator = str(quantity.comparator);
    // UCUM's "1" means "no unit"; a bare % reads better without a space.
    const shownUnit = unit === '1' ? '' : unit;
    return `${comparator}${value}${shownUnit === '%' ? '%' : shownUnit ? ` ${shownUnit}` : ''}`;
  }

  function rangeText(range) {
    if (!isObject(range)) {
      return '';
    }
    const low = quantityText(range.low);
    const high = quantityText(range.high);
    if (low && high) {
      return `${low} to ${high}`;
    }
    if (low) {
      return `at least ${low}`;
    }
    return high ? `at most ${high}` : '';
  }

  function ageText(age) {
    return quantityText(age);
  }

  // value[x] of an Observation or one of its components.
  function valueText(holder) {
    if (!isObject(holder)) {
      return '';
    }
    if (holder.valueQuantity) return quantityText(holder.valueQuantity);
    if (holder.valueCodeableConcept) return conceptText(holder.valueCodeableConcept);
    if (typeof holder.valueString === 'string') return holder.valueString.trim();
    if (typeof holder.valueBoolean === 'boolean') return holder.valueBoolean ? 'Yes' : 'No';
    if (typeof holder.valueInteger === 'number') return numberText(holder.valueInteger);
    if (holder.valueRange) return rangeText(holder.valueRange);
    if (isObject(holder.valueRatio)) {
      const numerator = quantityText(holder.valueRatio.numerator);
      const denominator = quantityText(holder.valueRatio.denominator);
      return numerator && denominator ? `${numerator} / ${denominator}` : numerator;
    }
    if (holder.valueDateTime) return fhirDate(holder.valueDateTime);
    if (holder.valuePeriod) return periodText(holder.valuePeriod);
    if (typeof holder.valueTime === 'string') return holder.valueTime;
    if (isObject(holder.dataAbsentReason)) return `(${conceptText(holder.dataAbsentReason)})`;
    return '';
  }

  // onset[x], performed[x], occurrence[x], effective[x] and friends.
  function choiceDate(resource, prefix) {
    const dateTime = resource[`${prefix}DateTime`];
    if (dateTime) return fhirDate(dateTime);
    if (resource[`${prefix}Period`]) return periodText(resource[`${prefix}Period`]);
    if (typeof resource[`${prefix}String`] === 'string') return resource[`${prefix}String`].trim();
    if (resource[`${prefix}Age`]) return `at age ${ageText(resource[`${prefix}Age`])}`;
    if (resource[`${prefix}Instant`]) return fhirDate(resource[`${prefix}Instant`]);
    if (resource[`${prefix}Range`]) return rangeText(resource[`${prefix}Range`]);
    return '';
  }

  function humanName(name) {
    if (!isObject(name)) {
      return '';
    }
    const text = str(name.text);
    if (text) {
      return text;
    }
    return [...list(name.prefix), ...list(name.given), name.family, ...list(name.suffix)]
      .map(str)
      .filter(Boolean)
      .join(' ');
  }

  function preferredName(names) {
    const all = list(names).filter(isObject);
    const chosen = all.find((n) => n.use === 'official') || all.find((n) => n.use === 'usual') || all[0];
    return humanName(chosen);
  }

  const capitalize = (text) => (text ? text.charAt(0).toUpperCase() + text.slice(1) : '');
  const labelled = (label, value) => (value ? `${label}: ${value}` : '');

  // ---------------------------------------------------------------------------------------------
  // Bundle references. Entries are found by fullUrl; relative references (Type/id), which IPS
  // documents use next to urn:uuid fullUrls, are matched on the referenced resource's type and id.

  function indexBundle(entries) {
    const byUrl = new Map();
    const byTypeAndId = new Map();
    for (const entry of entries) {
      const resource = entry.resource;
      if (!isObject(resource)) {
        continue;
      }
      if (str(entry.fullUrl)) {
        byUrl.set(entry.fullUrl.trim(), resource);
      }
      if (str(resource.resourceType) && str(resource.id)) {
        byTypeAndId.set(`${resource.resourceType}/${resource.id}`, resource);
      }
    }
    // `container` is the resource a reference sits in: a `#id` names one of its contained
    // resources (as a Medication moved into its MedicationStatement at import).
    return (reference, container) => {
      const ref = str(reference && reference.reference);
      if (!ref) {
        return null;
      }
      if (ref.startsWith('#')) {
        const id = ref.slice(1);
        const inside = isObject(container) ? list(container.contained) : [];
        return inside.find((resource) => isObject(resource) && resource.id === id) || null;
      }
      if (byUrl.has(ref)) {
        return byUrl.get(ref);
      }
      const relative = /([A-Za-z]+\/[A-Za-z0-9.-]{1,64})(?:\/_history\/[^/]+)?$/.exec(ref);
      return relative ? byTypeAndId.get(relative[1]) || null : null;
    };
  }

  // ---------------------------------------------------------------------------------------------
  // One list item per resource: a headline and a few detail lines, all plain strings.

  function describeCondition(condition) {
    return {
      title: conceptText(condition.code) || 'Unnamed problem',
      details: [
        labelled('Status', conceptText(condition.clinicalStatus)),
        labelled('Severity', conceptText(condition.severity)),
        labelled('Onset', choiceDate(condition, 'onset')),
        labelled('Resolved', choiceDate(condition, 'abatement')),
      ],
    };
  }

  function describeAllergy(allergy) {
    const reactions = list(allergy.reaction).filter(isObject).map((reaction) => {
      const manifestations = list(reaction.manifestation).map(conceptText).filter(Boolean).join(', ');
      const severity = str(reaction.severity);
      return manifestations && severity ? `${manifestations} (${severity})` : manifestations;
    });
    return {
      title: conceptText(allergy.code) || 'Unnamed allergy or intolerance',
      // A high-criticality allergy is the one thing a reader in a hurry must not miss.
      alert: allergy.criticality === 'high',
      details: [
        labelled('Criticality', str(allergy.criticality)),
        labelled('Reaction', reactions.filter(Boolean).join('; ')),
        labelled('Type', [str(allergy.type), ...list(allergy.category).map(str)].filter(Boolean).join(', ')),
        labelled('Status', conceptText(allergy.clinicalStatus)),
        labelled('Onset', choiceDate(allergy, 'onset')),
      ],
    };
  }

  function describeMedication(statement, resolve) {
    let name = conceptText(statement.medicationCodeableConcept);
    if (!name && statement.medicationReference) {
      const medication = resolve(statement.medicationReference, statement);
      name = (medication && conceptText(medication.code)) || str(statement.medicationReference.display);
    }
    const dosage = list(statement.dosage).find(isObject);
    let dosageText = dosage ? str(dosage.text) : '';
    if (!dosageText && dosage) {
      const dose = list(dosage.doseAndRate).map((d) => isObject(d) && quantityText(d.doseQuantity)).find(Boolean);
      dosageText = [dose, conceptText(dosage.route)].filter(Boolean).join(', ');
    }
    return {
      title: name || 'Unnamed medication',
      details: [
        labelled('Dosage', dosageText),
        labelled('Status', str(statement.status)),
        labelled('Taken', choiceDate(statement, 'effective')),
        labelled('Prescribed', fhirDate(statement.authoredOn)),
      ],
    };
  }

  function describeImmunization(immunization) {
    const status = str(immunization.status);
    return {
      title: conceptText(immunization.vaccineCode) || 'Unnamed vaccine',
      details: [
        labelled('Given', choiceDate(immunization, 'occurrence')),
        status && status !== 'completed' ? labelled('Status', status) : '',
      ],
    };
  }

  function bloodPressureText(observation) {
    const components = list(observation.component).filter(isObject);
    const systolic = components.find((c) => hasCode(c.code, LOINC, new Set([SYSTOLIC_CODE])));
    const diastolic = components.find((c) => hasCode(c.code, LOINC, new Set([DIASTOLIC_CODE])));
    if (!systolic || !diastolic || !isObject(systolic.valueQuantity) || !isObject(diastolic.valueQuantity)) {
      return '';
    }
    const top = numberText(systolic.valueQuantity.value);
    const bottom = numberText(diastolic.valueQuantity.value);
    const unit = str(systolic.valueQuantity.unit) || str(systolic.valueQuantity.code) || 'mmHg';
    return top && bottom ? `${top}/${bottom} ${unit}` : '';
  }

  function describeObservation(observation, resolve) {
    const details = [];
    let value = valueText(observation);
    const components = list(observation.component).filter(isObject);
    if (!value && components.length > 0) {
      value = bloodPressureText(observation);
      if (!value) {
        value = components
          .map((c) => {
            const componentValue = valueText(c);
            return componentValue ? `${conceptText(c.code) || 'Value'}: ${componentValue}` : '';
          })
          .filter(Boolean)
          .join('; ');
      }
    }
    details.push(labelled('Result', value));
    // A panel (blood typing, say) carries its results in member observations.
    for (const member of list(observation.hasMember)) {
      const resolved = resolve(member);
      if (resolved && resolved.resourceType === 'Observation') {
        details.push(labelled(conceptText(resolved.code) || 'Result', valueText(resolved) || bloodPressureText(resolved)));
      }
    }
    details.push(labelled('Interpretation', list(observation.interpretation).map(conceptText).filter(Boolean).join(', ')));
    details.push(labelled('Date', choiceDate(observation, 'effective')));
    details.push(labelled('Note', list(observation.note).map((n) => str(n && n.text)).filter(Boolean).join(' ')));
    return { title: conceptText(observation.code) || 'Unnamed result', details };
  }

  function describeProcedure(procedure) {
    const status = str(procedure.status);
    return {
      title: conceptText(procedure.code) || 'Unnamed procedure',
      details: [
        labelled('Performed', choiceDate(procedure, 'performed')),
        status && status !== 'completed' ? labelled('Status', status) : '',
      ],
    };
  }

  function describeCarePlan(plan) {
    const title = str(plan.title);
    const description = str(plan.description);
    return {
      title: title || description || list(plan.category).map(conceptText).find(Boolean) || 'Care plan',
      details: [
        title ? description : '',
        labelled('Status', str(plan.status)),
        labelled('Period', periodText(plan.period)),
      ],
    };
  }

  function describeCoverage(coverage, resolve) {
    const payors = list(coverage.payor).map((payor) => {
      const organization = resolve(payor);
      return str(payor && payor.display) || (organization && (str(organization.name) || preferredName(organization.name)));
    });
    return {
      title: conceptText(coverage.type) || 'Coverage',
      details: [
        labelled('Payor', payors.filter(Boolean).join(', ')),
        labelled('Period', periodText(coverage.period)),
        labelled('Status', str(coverage.status)),
      ],
    };
  }

  function describeOther(resource) {
    const concept = resource.code || resource.vaccineCode || (list(resource.type)[0]) || resource.type;
    return {
      title: conceptText(concept) || str(resource.title) || resource.resourceType,
      details: [labelled('Record type', resource.resourceType), labelled('Status', str(resource.status))],
    };
  }

  const DESCRIBERS = new Map([
    ['Condition', describeCondition],
    ['AllergyIntolerance', describeAllergy],
    ['MedicationStatement', describeMedication],
    ['MedicationRequest', describeMedication],
    ['Immunization', describeImmunization],
    ['Observation', describeObservation],
    ['Procedure', describeProcedure],
    ['CarePlan', describeCarePlan],
    ['Coverage', describeCoverage],
  ]);

  function describe(resource, resolve) {
    const describer = DESCRIBERS.get(resource.resourceType) || describeOther;
    return describer(resource, resolve);
  }

  // ---------------------------------------------------------------------------------------------
  // Building the page (createElement and text nodes only)

  function element(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    for (const child of children) {
      if (child instanceof Node) {
        node.appendChild(child);
      } else if (child !== null && child !== undefined && child !== '') {
        node.appendChild(document.createTextNode(String(child)));
      }
    }
    return node;
  }

  function itemElement({ title, details, alert = false }) {
    const item = element('li', alert ? 'item item-alert' : 'item');
    if (alert) {
      item.appendChild(element('span', 'item-flag', 'High criticality'));
    }
    item.appendChild(element('span', 'item-title', title));
    const shown = details.filter(Boolean);
    if (shown.length > 0) {
      item.appendChild(element('span', 'item-details', shown.join(' · ')));
    }
    return item;
  }

  function renderPatient(patient) {
    const block = element('section', 'patient');
    block.setAttribute('aria-label', 'Patient');
    block.appendChild(element('h2', 'patient-name', preferredName(patient && patient.name) || 'Unnamed patient'));
    const facts = element('dl', 'patient-facts');
    const add = (term, value) => {
      if (value) {
        facts.append(element('dt', null, term), element('dd', null, value));
      }
    };
    if (patient) {
      add('Born', fhirDate(patient.birthDate));
      add('Gender', capitalize(str(patient.gender)));
    }
    if (facts.childNodes.length > 0) {
      block.appendChild(facts);
    }
    return block;
  }

  function emptyReasonText(concept) {
    const coding = list(concept && concept.coding).find(
      (c) => isObject(c) && c.system === 'http://terminology.hl7.org/CodeSystem/list-empty-reason',
    );
    if (coding && EMPTY_REASON_TEXT.has(coding.code)) {
      return EMPTY_REASON_TEXT.get(coding.code);
    }
    return conceptText(concept) || 'No information';
  }

  function isAllergySection(section, resources) {
    return (
      hasCode(section.code, LOINC, new Set([ALLERGY_SECTION_CODE])) ||
      (resources.length > 0 && resources.every((r) => r.resourceType === 'AllergyIntolerance'))
    );
  }

  // `given` holds the resources when they come from no section (collection Bundles).
  function renderSection(section, resolve, context, depth, given) {
    const resources = given || list(section.entry).map(resolve).filter(isObject);
    const title = str(section.title) || conceptText(section.code) || 'Section';
    const block = element('section', 'ips-section');
    block.appendChild(element(depth === 0 ? 'h2' : 'h3', 'section-title', title));

    const items = element('ul', 'items');
    if (!context.allergyListPlaced && isAllergySection(section, resources)) {
      // Automated checks wait for this list; there is one per page.
      items.id = 'allergies';
      context.allergyListPlaced = true;
    }

    if (section.emptyReason) {
      items.appendChild(element('li', 'item item-empty', emptyReasonText(section.emptyReason)));
    } else if (resources.length === 0 && list(section.section).length === 0) {
      items.appendChild(element('li', 'item item-empty', 'No entries'));
    }
    for (const resource of resources) {
      context.shown.add(resource);
      items.appendChild(itemElement(describe(resource, resolve)));
    }
    const missing = list(section.entry).length - resources.length;
    if (missing > 0) {
      items.appendChild(element('li', 'item item-empty', `${missing} ${missing === 1 ? 'entry is' : 'entries are'} missing from this document`));
    }
    if (items.childNodes.length > 0) {
      block.appendChild(items);
    }
    for (const child of list(section.section).filter(isObject)) {
      block.appendChild(renderSection(child, resolve, context, depth + 1));
    }
    return block;
  }

  const COLLECTION_GROUPS = [
    ['Problems', ['Condition']],
    ['Allergies and intolerances', ['AllergyIntolerance']],
    ['Medications', ['MedicationStatement', 'MedicationRequest']],
    ['Immunizations', ['Immunization']],
    ['Results', ['Observation']],
    ['Procedures', ['Procedure']],
    ['Plan of care', ['CarePlan']],
  ];

  function renderBundle(bundle, context) {
    if (!isObject(bundle) || bundle.resourceType !== 'Bundle') {
      throw new ViewerError('The shared file is not a health summary this viewer can show.', { final: true });
    }
    const entries = list(bundle.entry).filter(isObject);
    const resolve = indexBundle(entries);
    const resources = entries.map((e) => e.resource).filter(isObject);
    const composition = resources.find((r) => r.resourceType === 'Composition');
    const patient =
      (composition && resolve(composition.subject)) || resources.find((r) => r.resourceType === 'Patient');

    const container = element('div', 'summary');
    container.appendChild(renderPatient(patient));
    const story = resources
      .filter((r) => r.resourceType === 'DocumentReference' && documentCode(r) === PATIENT_NOTE)
      .flatMap(storyParagraphs);
    if (story.length > 0) {
      container.appendChild(renderStory(story));
    }

    if (composition) {
      const about = element('p', 'summary-meta');
      const authors = list(composition.author)
        .map((a) => {
          const who = resolve(a);
          return str(a && a.display) || (who && (preferredName(who.name) || str(who.name)));
        })
        .filter(Boolean);
      about.append(
        [
          str(composition.title),
          labelled('Dated', fhirDate(composition.date)),
          labelled('Author', authors.join(', ')),
        ]
          .filter(Boolean)
          .join(' · '),
      );
      container.appendChild(about);
      for (const section of list(composition.section).filter(isObject)) {
        container.appendChild(renderSection(section, resolve, context, 0));
      }
    } else {
      // A collection Bundle (no Composition): group the clinical resources by type instead.
      for (const [title, types] of COLLECTION_GROUPS) {
        const members = resources.filter((r) => types.includes(r.resourceType));
        if (members.length > 0) {
          container.appendChild(
            renderSection({ title }, resolve, context, 0, members),
          );
        }
      }
    }

    // Coverage has no IPS section: the document carries it as an entry no section points to.
    const coverages = resources.filter((r) => r.resourceType === 'Coverage' && !context.shown.has(r));
    if (coverages.length > 0) {
      const block = element('section', 'ips-section');
      block.append(
        element('h2', 'section-title', 'Coverage'),
        element('ul', 'items', ...coverages.map((c) => itemElement(describe(c, resolve)))),
      );
      container.appendChild(block);
    }
    const pdfs = resources.filter((r) => r.resourceType === 'DocumentReference').map(pdfOf).filter(Boolean);
    if (pdfs.length > 0) {
      container.appendChild(renderPdfs(pdfs));
    }
    return container;
  }

  // A Kill the Clipboard PatientSharedDocumentReference: a PDF inline in `content[].attachment.data`
  // (the rendered summary, LOINC 60591-5, or the patient's own story, 51855-5).
  const DOCUMENT_TITLES = { '60591-5': 'Patient summary (PDF)', '51855-5': "The patient's own story (PDF)" };

  const PATIENT_NOTE = '51855-5';

  function documentCode(reference) {
    return list(reference.type && reference.type.coding)
      .map((c) => isObject(c) && str(c.code))
      .find(Boolean);
  }

  // The patient's story as text. The PDF is what an EHR files; the gateway also puts the story in
  // the DocumentReference's narrative, so it can be read here without a PDF parser. The narrative's
  // XHTML is never parsed into a DOM: it is cut into tags and text, where <p> starts a paragraph,
  // <br/> breaks a line, every other tag is dropped, and character references are decoded. Only
  // text comes out, and it is inserted as text nodes.
  const XML_ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

  function decodeXmlText(text) {
    return text.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-z]{2,4});/g, (whole, name) => {
      if (name.startsWith('#')) {
        const point = name[1] === 'x' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
        return point > 0 && point <= 0x10ffff && (point < 0xd800 || point > 0xdfff) ? String.fromCodePoint(point) : '';
      }
      return XML_ENTITIES[name] ?? whole;
    });
  }

  function storyParagraphs(reference) {
    const div = isObject(reference.text) && str(reference.text.div);
    if (!div) {
      return [];
    }
    const paragraphs = [];
    let current = '';
    const close = () => {
      if (current.trim()) {
        paragraphs.push(current.trim());
      }
      current = '';
    };
    for (const [token] of div.matchAll(/<[^>]*>|[^<]+/g)) {
      if (!token.startsWith('<')) {
        current += decodeXmlText(token);
      } else if (/^<\/?p[\s>/]/i.test(token)) {
        close();
      } else if (/^<br[\s>/]/i.test(token)) {
        current += '\n';
      }
    }
    close();
    return paragraphs;
  }

  function renderStory(paragraphs) {
    const block = element('section', 'ips-section');
    block.id = 'patient-story';
    block.append(
      element('h2', 'section-title', "In the patient's own words"),
      ...paragraphs.map((text) => element('p', 'story-paragraph', text)),
    );
    return block;
  }

  function pdfOf(reference) {
    const attachment = list(reference.content)
      .map((content) => isObject(content) && content.attachment)
      .find((a) => isObject(a) && a.contentType === 'application/pdf' && str(a.data));
    if (!attachment) {
      return null;
    }
    let bytes;
    try {
      const binary = atob(str(attachment.data).replace(/\s+/g, ''));
      bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    } catch {
      return null;
    }
    const code = documentCode(reference);
    return {
      title: DOCUMENT_TITLES[code] || str(attachment.title) || 'Document (PDF)',
      date: fhirDate(reference.date),
      fileName: code === PATIENT_NOTE ? 'patient-story.pdf' : 'patient-summary.pdf',
      // The file never leaves the browser: a blob URL of the decrypted bytes.
      url: URL.createObjectURL(new Blob([bytes], { type: 'application/pdf' })),
    };
  }

  function renderPdfs(pdfs) {
    const block = element('section', 'ips-section');
    block.id = 'shared-pdfs';
    const items = pdfs.map((pdf) => {
      const item = itemElement({ title: pdf.title, details: [labelled('Shared', pdf.date)] });
      const open = element('a', 'pdf-link', 'Open');
      open.href = pdf.url;
      open.target = '_blank';
      open.rel = 'noopener';
      const download = element('a', 'pdf-link', 'Download');
      download.href = pdf.url;
      download.download = pdf.fileName;
      item.appendChild(element('span', 'pdf-links', open, download));
      return item;
    });
    block.append(element('h2', 'section-title', 'Documents'), element('ul', 'items', ...items));
    return block;
  }

  function renderDocuments(texts, manifestStatus) {
    const context = { allergyListPlaced: false, shown: new Set() };
    const rendered = texts.map((text) => {
      let bundle;
      try {
        bundle = JSON.parse(text);
      } catch {
        throw new ViewerError('The shared file is not a health summary this viewer can show.', { final: true });
      }
      return renderBundle(bundle, context);
    });

    const toolbar = element('div', 'toolbar');
    const print = element('button', 'print-button', 'Print');
    print.type = 'button';
    print.addEventListener('click', () => window.print());
    toolbar.appendChild(print);

    const note =
      manifestStatus === 'can-change'
        ? element('p', 'summary-note', 'The person who shared this summary may update it. Open the link again later to see the latest version.')
        : '';
    ui.document.replaceChildren(toolbar, ...(note ? [note] : []), ...rendered);
    ui.form.hidden = true;
    hideStatus();
    ui.document.hidden = false;
    setState('rendered');
  }

  // ---------------------------------------------------------------------------------------------
  // The form

  function rememberedRecipient() {
    try {
      return window.sessionStorage.getItem(RECIPIENT_STORAGE_KEY) || '';
    } catch {
      return '';
    }
  }

  function rememberRecipient(name) {
    try {
      window.sessionStorage.setItem(RECIPIENT_STORAGE_KEY, name);
    } catch {
      // Storage can be disabled (private modes); remembering the name is only a convenience.
    }
  }

  function setFieldError(input, errorNode, message) {
    errorNode.textContent = message;
    errorNode.hidden = !message;
    if (message) {
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', errorNode.id);
    } else {
      input.removeAttribute('aria-invalid');
      input.removeAttribute('aria-describedby');
    }
  }

  function readForm(link) {
    const recipient = ui.recipient.value.trim();
    const passcode = ui.passcode.value.replace(/\s+/g, '');
    let valid = true;

    if (!recipient) {
      setFieldError(ui.recipient, ui.recipientError, 'Enter your name so the person who shared this knows who looked.');
      valid = false;
    } else if ([...recipient].length > RECIPIENT_MAX_CHARS) {
      // Counted in characters (code points), as the server counts them.
      setFieldError(ui.recipient, ui.recipientError, `Use at most ${RECIPIENT_MAX_CHARS} characters.`);
      valid = false;
    } else {
      setFieldError(ui.recipient, ui.recipientError, '');
    }

    if (link.passcode) {
      // Checked here so that a typo never costs one of the link's few passcode attempts.
      if (!PASSCODE_PATTERN.test(passcode)) {
        setFieldError(ui.passcode, ui.passcodeError, 'The passcode is 6 digits.');
        if (valid) {
          ui.passcode.focus();
        }
        valid = false;
      } else {
        setFieldError(ui.passcode, ui.passcodeError, '');
      }
    }
    if (!valid && !recipient) {
      ui.recipient.focus();
    }
    return valid ? { recipient, passcode } : null;
  }

  function holdButton(seconds) {
    ui.open.disabled = true;
    window.setTimeout(() => {
      ui.open.disabled = false;
    }, seconds * 1000);
  }

  function startForm(link, key) {
    let busy = false;
    ui.passcodeField.hidden = !link.passcode;
    ui.recipient.value = rememberedRecipient();

    ui.form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (busy || ui.open.disabled) {
        return;
      }
      const answers = readForm(link);
      if (!answers) {
        return;
      }
      rememberRecipient(answers.recipient);

      busy = true;
      ui.open.disabled = true;
      setState('opening');
      showStatus('Opening the summary…', 'info');
      let retryAfter = 0;
      try {
        const { jwes, status } = link.direct
          ? await fetchDirectFile(link, answers.recipient)
          : await fetchManifestFiles(link, answers.recipient, answers.passcode);
        const texts = [];
        for (const jwe of jwes) {
          texts.push(await decryptJwe(jwe, key));
        }
        renderDocuments(texts, status);
      } catch (error) {
        const message = error instanceof ViewerError ? error.message : 'Something went wrong while opening the summary.';
        if (error instanceof ViewerError && error.final) {
          fail(message);
        } else {
          retryAfter = error instanceof ViewerError ? error.retryAfter : 0;
          showStatus(message, 'error');
          setState('asking');
          ui.passcode.value = '';
          (link.passcode ? ui.passcode : ui.recipient).focus();
        }
      } finally {
        busy = false;
        ui.open.disabled = false;
        if (retryAfter > 0) {
          holdButton(retryAfter);
        }
      }
    });

    ui.form.hidden = false;
    setState('asking');
    (ui.recipient.value ? (link.passcode ? ui.passcode : ui.open) : ui.recipient).focus();
  }

  // ---------------------------------------------------------------------------------------------
  // Start

  async function start() {
    let link;
    try {
      link = readLink(window.location.hash);
    } catch (error) {
      fail(error instanceof ViewerError ? error.message : 'This link cannot be opened.');
      return;
    }

    if (link.label) {
      ui.label.textContent = link.label;
      ui.label.hidden = false;
    }
    if (link.exp !== null && link.exp * 1000 <= Date.now()) {
      fail(`This link expired on ${formatInstant(link.exp)}. Ask the person who shared it for a new one.`);
      return;
    }

    if (!window.isSecureContext || !window.crypto || !window.crypto.subtle) {
      fail(
        'This page must be opened over https (a secure connection): the browser only decrypts ' +
          'health data on secure pages. Ask the sender for an https link.',
      );
      return;
    }
    // The page may only talk to its own server (the CSP says so); say it plainly rather than
    // failing on a blocked request.
    if (!sameOrigin(link.url)) {
      fail(`This link belongs to another server (${link.url.host}). Open it with that server's viewer.`);
      return;
    }

    let key;
    try {
      // Not extractable: once imported, the key cannot be read back out of WebCrypto.
      key = await crypto.subtle.importKey('raw', link.keyBytes, { name: 'AES-GCM' }, false, ['decrypt']);
    } catch {
      fail('This link cannot be opened: its key is missing or damaged.');
      return;
    } finally {
      link.keyBytes.fill(0);
    }
    if (link.passcode && !(await mayBeLive(link))) {
      fail(NOT_ACTIVE);
      return;
    }
    // Said only of a link that is not known to be dead.
    if (link.exp !== null) {
      ui.expiry.textContent = `Link valid until ${formatInstant(link.exp)}`;
      ui.expiry.hidden = false;
    }
    startForm(link, key);
  }

  // Before the reader types anything, a passcode link's manifest is asked for without a passcode:
  // 404 means the link is no longer active (revoked, locked, expired early), 401 that it is live,
  // and a request without a passcode spends no attempt. The probe names itself as the recipient, so
  // the patient's access history shows it for what it is. Anything else (offline, rate limited)
  // decides nothing: the form opens and the real request says what is wrong.
  // A direct (U) link has no such probe: its only request returns the file, so it is asked once,
  // with the reader's name.
  async function mayBeLive(link) {
    try {
      const response = await request(link.url.href, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ recipient: PROBE_RECIPIENT }),
      });
      return response.status !== 404;
    } catch {
      return true;
    }
  }

  // Pasting another link into the address bar only changes the fragment: start over with it.
  window.addEventListener('hashchange', () => window.location.reload());

  start().catch(() => fail('This link cannot be opened.'));
})();
