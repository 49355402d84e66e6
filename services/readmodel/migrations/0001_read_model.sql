-- The read model of the status API: one row per task of the reporting worker's changelog.
-- Identifiers compare byte by byte (COLLATE "C") whatever the database's locale, so that the
-- orders the API returns are those of the in-memory ledger, and the indexes serve them.

CREATE TABLE tasks (
    id text COLLATE "C" PRIMARY KEY,
    provider_id text COLLATE "C" NOT NULL,
    provider_name text,
    system text COLLATE "C" NOT NULL,
    responsible text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL,
    due date NOT NULL,
    obligation text COLLATE "C" NOT NULL,
    action text COLLATE "C" NOT NULL,
    channel text COLLATE "C" NOT NULL,
    rule text COLLATE "C" NOT NULL,
    unit_id text COLLATE "C",
    plan_id text COLLATE "C" NOT NULL,
    correlation_id text COLLATE "C",
    depends_on text[] COLLATE "C" NOT NULL DEFAULT '{}',
    -- The whole TaskRecord as the reporting worker holds it. The person a task is about (an
    -- HSA-id) stays in here and never becomes a column of its own.
    record jsonb NOT NULL,
    -- The changelog position this row came from: an upsert never replaces a row with an older one.
    source_partition int NOT NULL,
    source_offset bigint NOT NULL,
    projected_at timestamptz NOT NULL DEFAULT now()
);

-- One provider's checklist; GET /v1/tasks (provider_id, due, id). With status and name included,
-- the provider summaries are an index-only scan, in provider order, with no sort.
CREATE INDEX tasks_provider ON tasks (provider_id, due, id) INCLUDE (status, provider_name);
-- The overdue list: active work only, in the order it is listed (due, system, obligation, id).
CREATE INDEX tasks_active_due ON tasks (due, system, obligation, id) WHERE status IN ('open', 'blocked');
-- The filters of the lists across providers.
CREATE INDEX tasks_system ON tasks (system, due);
CREATE INDEX tasks_responsible ON tasks (responsible, due);
CREATE INDEX tasks_status ON tasks (status, due);

-- A task's audit trail: entry n of the record's history (it only grows). The unique
-- (task_id, n) is also the index that reads one task's history in order.
CREATE TABLE task_history (
    id text COLLATE "C" PRIMARY KEY,  -- "<task id>#<n>"
    task_id text COLLATE "C" NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    n int NOT NULL,
    status text COLLATE "C" NOT NULL,
    by text NOT NULL,
    at timestamptz NOT NULL,
    reason text,
    change_id text COLLATE "C",
    UNIQUE (task_id, n)
);

-- How far each changelog partition has been projected: the next offset to read.
CREATE TABLE projection_positions (
    changelog text COLLATE "C" NOT NULL,
    partition int NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (changelog, partition)
);
