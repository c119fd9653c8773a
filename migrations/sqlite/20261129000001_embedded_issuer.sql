-- The embedded issuer's store. Times are milliseconds since the Unix epoch.
-- No SHL key and no plaintext passcode is ever stored: the file is kept encrypted (JWE) and
-- the passcode as an argon2id hash of its HMAC with the gateway's secret key.

CREATE TABLE patients (
    id TEXT PRIMARY KEY NOT NULL,
    resource TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE patient_resources (
    patient_id TEXT NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    PRIMARY KEY (patient_id, resource_type, resource_id)
);

-- Bearer tokens as HMAC-SHA256 (hex): a token check runs on every request.
CREATE TABLE api_tokens (
    token_hmac TEXT PRIMARY KEY NOT NULL,
    patient_id TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE health_links (
    id TEXT PRIMARY KEY NOT NULL,
    -- SHA-256 (hex) of the manifest id: the id itself is a capability and stays in the link.
    manifest_id_hash TEXT NOT NULL UNIQUE,
    patient_id TEXT NOT NULL,
    label TEXT,
    mode TEXT NOT NULL,
    flag TEXT NOT NULL,
    resource_types TEXT NOT NULL,
    passcode_hash TEXT,
    attempts_remaining BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    jwe TEXT
);

CREATE INDEX health_links_by_patient ON health_links (patient_id, created_at);
CREATE INDEX health_links_by_expiry ON health_links (expires_at);

CREATE TABLE link_accesses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    link_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    recipient TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL
);

CREATE INDEX link_accesses_by_link ON link_accesses (link_id, at);
