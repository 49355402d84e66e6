-- The places people took in their unit's access orders (topic omboard.holdings): who holds an
-- access through a unit's order, for the access register. One row per place, never changed. As
-- in tasks, the person (an HSA-id) stays inside the record and never becomes a column: the id is a
-- digest.
CREATE TABLE holdings (
    id text COLLATE "C" PRIMARY KEY,
    provider_id text COLLATE "C" NOT NULL,
    task_id text COLLATE "C" NOT NULL,  -- the unit's order whose place it is
    grant_rule text COLLATE "C" NOT NULL,
    unit_id text COLLATE "C" NOT NULL,
    record jsonb NOT NULL,
    source_partition int NOT NULL,
    source_offset bigint NOT NULL,
    projected_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX holdings_provider ON holdings (provider_id, unit_id, task_id);
