-- Many nodes on one database (docs/postgres.md): the invalidation log that
-- every write narrowing access appends to in its own transaction, and the
-- node table of acknowledgements and heartbeats.

-- Sequence numbers are dense and committed in order: `latchkey_invalidate`
-- takes an advisory lock held until the writer's commit and numbers the row
-- max + 1 (a rolled-back writer leaves no hole).
CREATE TABLE invalidations (
    seq     BIGINT PRIMARY KEY,
    kind    TEXT   NOT NULL,
    target  BIGINT,
    created TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE nodes (
    id        TEXT PRIMARY KEY,
    started   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat TIMESTAMPTZ NOT NULL DEFAULT now(),
    acked     BIGINT NOT NULL
);

-- Appends one entry per target (one with no target for an empty array) and
-- notifies the nodes; returns the last sequence number. Call it last, just
-- before the commit: the lock is held until then.
CREATE FUNCTION latchkey_invalidate(p_kind TEXT, p_targets BIGINT[]) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    n BIGINT;
    t BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(7809651199139577859);
    SELECT coalesce(max(seq), 0) INTO n FROM invalidations;
    IF p_targets IS NULL OR cardinality(p_targets) = 0 THEN
        n := n + 1;
        INSERT INTO invalidations (seq, kind) VALUES (n, p_kind);
    ELSE
        FOREACH t IN ARRAY p_targets LOOP
            n := n + 1;
            INSERT INTO invalidations (seq, kind, target) VALUES (n, p_kind, t);
        END LOOP;
    END IF;
    PERFORM pg_notify('latchkey_invalidation', n::text);
    RETURN n;
END
$$;

-- A node's acknowledgement (and heartbeat); false when the node was
-- forgotten. Wakes writers waiting for acknowledgements.
CREATE FUNCTION latchkey_ack(p_id TEXT, p_seq BIGINT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE nodes SET acked = p_seq, heartbeat = now() WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    PERFORM pg_notify('latchkey_ack', p_id || ' ' || p_seq::text);
    RETURN TRUE;
END
$$;
