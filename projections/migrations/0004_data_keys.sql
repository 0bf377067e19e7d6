-- The users' data keys, each wrapped (AES-256-GCM) under the deployment's key-encryption key
-- (SESSIONS_KEK / SESSIONS_KEK_FILE; service.keyring). Redis caches the keys; this is the durable copy, so a
-- Redis that lost its data loses no key. A row is deleted when its user is forgotten (crypto-shredding).
CREATE TABLE data_keys (
    tenant     text        NOT NULL,
    user_id    text        NOT NULL,
    key_id     text        NOT NULL,       -- the id in every value sealed with it ("enc:v1:<key id>:...")
    wrapped    bytea       NOT NULL,       -- nonce (12 bytes) || AES-GCM(KEK, data key) || tag
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, user_id)
);
