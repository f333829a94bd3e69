-- adsync's PostgreSQL checkpoint store, schema version 1.
-- Applied by adsync_postgres::PgStore::migrate in one transaction, under an
-- advisory lock, with the row in adsync_schema that records it.

-- One row per applied migration; the store's version is the largest.
CREATE TABLE IF NOT EXISTS adsync_schema (
    version bigint NOT NULL PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Every key of the store, in exactly the layout of sled's store
-- (`r/<sync>`, `m/<sync>`, `p/<sync>`, `s/<sync>\0<n>`, `h/<sync>\0<seq>`,
-- `i/<key>`, `x/<data>`): the engine decodes it as it decodes sled's tree, and
-- copying a store is copying its keys. Prefix scans are key ranges.
CREATE TABLE adsync_kv (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);

-- One row per sync, kept up to date by every commit that writes its record
-- (`r/<sync>`): what claims and status queries need, without decoding records.
-- owner / lease_expires_at / fence: the lease. The fencing token grows at
-- every claim; a fenced commit lands only while it still equals the commit's.
CREATE TABLE adsync_syncs (
    id text PRIMARY KEY,
    status text NOT NULL,
    not_before timestamptz,
    owner text,
    lease_expires_at timestamptz,
    fence bigint NOT NULL DEFAULT 0
);

-- Claims look for running syncs that are due.
CREATE INDEX adsync_syncs_claimable ON adsync_syncs (status, not_before);
