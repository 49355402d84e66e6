-- Each plan's verdict on its date (topic omboard.verdicts, compacted): one row per provider and
-- subject (the id is DateVerdict.key, a digest of the two), the latest record of that subject; an
-- upsert never replaces a row with one from an older position. at_risk false: the latest plan meets
-- its date. The subject names a person by pseudonym only, never by HSA-id.
CREATE TABLE verdicts (
    id text COLLATE "C" PRIMARY KEY,
    provider_id text COLLATE "C" NOT NULL,
    subject text COLLATE "C" NOT NULL,
    event_id text COLLATE "C" NOT NULL,
    event_type text COLLATE "C" NOT NULL,
    date date NOT NULL,
    at_risk boolean NOT NULL,
    earliest_feasible date,
    record jsonb NOT NULL,  -- the whole DateVerdict, its chain with it
    source_partition int NOT NULL,
    source_offset bigint NOT NULL,
    projected_at timestamptz NOT NULL DEFAULT now()
);

-- The status page's box: a provider's dates at risk, by date.
CREATE INDEX verdicts_at_risk ON verdicts (provider_id, date, subject) WHERE at_risk;
