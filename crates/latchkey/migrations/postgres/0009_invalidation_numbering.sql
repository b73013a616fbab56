-- Writers no longer number invalidation-log rows inside their own
-- transaction (the lock that kept the numbering dense was held across
-- every writer's commit, one fsync after another). A writer now appends to
-- `pending_invalidations` and commits; `latchkey_number` then moves every
-- committed pending row into `invalidations`, numbered densely and in
-- order, in a short transaction of its own (docs/postgres.md, rule 1).

CREATE TABLE pending_invalidations (
    id      BIGSERIAL PRIMARY KEY,
    kind    TEXT   NOT NULL,
    target  BIGINT,
    created TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Appends one pending entry per target (one with no target for an empty
-- array), in the caller's transaction. Takes no lock. Returns 0 (the
-- sequence number is given by `latchkey_number` after the commit).
CREATE OR REPLACE FUNCTION latchkey_invalidate(p_kind TEXT, p_targets BIGINT[]) RETURNS BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    IF p_targets IS NULL OR cardinality(p_targets) = 0 THEN
        INSERT INTO pending_invalidations (kind) VALUES (p_kind);
    ELSE
        INSERT INTO pending_invalidations (kind, target) SELECT p_kind, t FROM unnest(p_targets) t;
    END IF;
    RETURN 0;
END
$$;

-- Numbers every committed pending entry (dense, in the order they were
-- appended) and notifies the nodes; returns the log's end, which is at
-- least the number of every entry committed before the call. Without
-- pending entries it takes no lock and writes nothing: an entry that is
-- not pending any more was numbered by a call that has committed.
CREATE FUNCTION latchkey_number() RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    n BIGINT;
    idle BOOLEAN;
BEGIN
    SELECT NOT EXISTS (SELECT 1 FROM pending_invalidations),
           (SELECT coalesce(max(seq), 0) FROM invalidations)
      INTO idle, n;
    IF idle THEN
        RETURN n;
    END IF;
    PERFORM pg_advisory_xact_lock(7809651199139577859);
    SELECT coalesce(max(seq), 0) INTO n FROM invalidations;
    WITH moved AS (
        DELETE FROM pending_invalidations RETURNING id, kind, target, created
    )
    INSERT INTO invalidations (seq, kind, target, created)
    SELECT n + row_number() OVER (ORDER BY id), kind, target, created FROM moved;
    SELECT coalesce(max(seq), 0) INTO n FROM invalidations;
    PERFORM pg_notify('latchkey_invalidation', n::text);
    RETURN n;
END
$$;

-- Acknowledgements need no durability (one lost in a crash only makes a
-- writer wait longer): committed without waiting for the disk.
CREATE OR REPLACE FUNCTION latchkey_ack(p_id TEXT, p_seq BIGINT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
    SET LOCAL synchronous_commit = off;
    UPDATE nodes SET acked = p_seq, heartbeat = now() WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    PERFORM pg_notify('latchkey_ack', p_id || ' ' || p_seq::text);
    RETURN TRUE;
END
$$;
