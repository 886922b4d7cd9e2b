package state

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// postgresMigrations are the steps of the PostgreSQL schema, in order: the
// table schema_migrations lists the ones applied, by version (1 is the
// first). Append new steps; never edit one that has shipped.
//
// Every time is a bigint of unix nanoseconds, as in [SQLite]: windows are
// exact to the nanosecond (timestamptz keeps microseconds), and the same
// code serves the database's clock and, for tests, the caller's.
var postgresMigrations = []struct{ name, sql string }{
	{"counters, reservations, claims, owners, intents and the audit trail", `
-- The time a write transaction runs at: at when given (the caller's clock,
-- for tests: see PostgresClientClock), else the database's clock when the
-- transaction began, in unix ns. One transaction sees one time.
CREATE FUNCTION clink_now(at bigint) RETURNS bigint LANGUAGE sql STABLE
	AS $$ SELECT COALESCE(at, (extract(epoch FROM transaction_timestamp()) * 1000000000)::bigint) $$;

-- A running total per limit key; its entries are the amounts that make it
-- up. A key's row is locked (FOR UPDATE) by every transaction that reads
-- or changes its total or its entries.
CREATE TABLE counters (
	key     text PRIMARY KEY,
	total   bigint NOT NULL,  -- the sum of the key's counter_entries
	win     bigint NOT NULL,  -- ns: the window of the last call
	expires bigint NOT NULL   -- unix ns: when its newest entry stops counting
);

CREATE TABLE counter_entries (
	key         text NOT NULL,
	at          bigint NOT NULL,    -- unix ns
	reservation text NOT NULL,
	kind        smallint NOT NULL,  -- a policy.Kind
	amount      bigint NOT NULL,
	PRIMARY KEY (key, at, reservation)
);

-- Reservations made by Reserve; a held call's lives in its intent.
CREATE TABLE reservations (
	id      text PRIMARY KEY,
	at      bigint NOT NULL,             -- unix ns: its entries' time
	expires bigint NOT NULL,             -- unix ns: when its longest window passes
	outcome smallint NOT NULL DEFAULT 0, -- 0 until settled, then a policy.Settlement
	keys    text[] NOT NULL              -- its counters
);

CREATE TABLE claims (
	key         text PRIMARY KEY,
	call        text NOT NULL,
	fingerprint text NOT NULL,
	at          bigint NOT NULL,    -- unix ns
	expires     bigint NOT NULL,    -- unix ns: at + window
	state       smallint NOT NULL,  -- 1 in flight, 2 done
	result      bytea
);

-- Store handles (one per server process), each with a lease in database
-- time: an owner that closed, or whose lease passed, is gone, and its open
-- intents are orphaned.
CREATE TABLE owners (
	owner       text PRIMARY KEY,
	published   bigint NOT NULL DEFAULT 0,  -- unix ns: its clock, with PostgresClientClock only
	lease_until bigint NOT NULL,            -- unix ns, database time
	closed      boolean NOT NULL DEFAULT false
);

CREATE TABLE intents (
	call        text PRIMARY KEY,
	seq         bigint NOT NULL,   -- the intent's audit record
	owner       text NOT NULL,
	claim_key   text NOT NULL,
	reservation text NOT NULL,
	at          bigint NOT NULL,   -- unix ns: the reservation's entries' time
	keys        text[] NOT NULL    -- the reservation's counters
);

CREATE TABLE audit (
	seq              bigint PRIMARY KEY,
	format           integer NOT NULL,
	time             text NOT NULL,  -- RFC 3339, UTC, to the nanosecond
	kind             text NOT NULL,
	call             text NOT NULL,
	caller           text NOT NULL,
	tool             text NOT NULL,
	decision         text NOT NULL,
	amount           text NOT NULL,
	currency         text NOT NULL,
	amounts          text NOT NULL,
	email_masked     text NOT NULL,
	email_hash       text NOT NULL,
	customer_id_hash text NOT NULL,
	reference_hash   text NOT NULL,
	reservation      text NOT NULL,
	session_id       text NOT NULL,
	duration_ns      bigint NOT NULL,
	prev_hash        text NOT NULL,
	hash             text NOT NULL
);
CREATE FUNCTION clink_audit_append_only() RETURNS trigger LANGUAGE plpgsql
	AS $$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
	FOR EACH ROW EXECUTE FUNCTION clink_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
	FOR EACH STATEMENT EXECUTE FUNCTION clink_audit_append_only();

-- The last record appended, apart from the records: deleting the last
-- records is detected. Appends lock this row: one chain for all handles.
CREATE TABLE audit_head (
	id   integer PRIMARY KEY CHECK (id = 1),
	seq  bigint NOT NULL,
	hash text NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');
`},
	{"approvals, and the audit trail's index of Clink sessions", `
-- SessionCreated looks a session up by it; most records have none.
CREATE INDEX audit_session ON audit (session_id) WHERE session_id <> '';

-- An approval's reservation lives in it, as a held call's lives in its
-- intent, until the call is held on it (the intent takes it over) or it is
-- denied or expires (it is released). An approval's row is locked (FOR
-- UPDATE) by every transaction that decides, expires or uses it.
CREATE TABLE approvals (
	id           text PRIMARY KEY,
	seq          bigint GENERATED ALWAYS AS IDENTITY,  -- the order approvals were requested in
	key          text NOT NULL,      -- the call key identical calls share
	fingerprint  text NOT NULL,
	caller       text NOT NULL,
	tool         text NOT NULL,
	amount       text NOT NULL,
	currency     text NOT NULL,
	amounts      text NOT NULL,
	email_masked text NOT NULL,
	reservation  text NOT NULL,
	reserved_at  bigint NOT NULL,    -- unix ns: the reservation's entries' time
	keys         text[] NOT NULL,    -- the reservation's counters
	state        text NOT NULL,      -- pending, approved, denied, expired, used
	requested_at bigint NOT NULL,    -- unix ns
	expires_at   bigint NOT NULL,    -- unix ns: the deadline to decide, or once approved to use it
	decided_by   text NOT NULL,
	decided_at   bigint NOT NULL     -- unix ns, 0 while pending
);
CREATE INDEX approvals_requested ON approvals (requested_at, seq);
CREATE INDEX approvals_state ON approvals (state, requested_at, seq);
CREATE INDEX approvals_live ON approvals (expires_at) WHERE state IN ('pending', 'approved');

-- One row per call key that asked for an approval, naming its newest. A
-- request locks it (FOR UPDATE) before it looks, so that identical calls
-- asking together create one approval.
CREATE TABLE approval_keys (
	key    text PRIMARY KEY,
	latest text NOT NULL DEFAULT ''  -- the newest approval's id
);
`},
}

// migrationLock is the pg_advisory_lock key under which migrations run
// ("clinkmcp" in ASCII), so that replicas starting together migrate once.
const migrationLock int64 = 0x636c696e6b6d6370

// schemaVersion returns the highest version schema_migrations lists, 0 for
// a database without the table. A table of that name that another program
// keeps is refused.
func schemaVersion(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, err
	}
	if !exists {
		return 0, nil
	}
	var version int
	// Another program's table of that name (golang-migrate's, say) has no
	// name column.
	err := q.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM schema_migrations WHERE name IS NOT NULL`).Scan(&version)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42703" { // undefined column
		return 0, errors.New("the database's schema_migrations table belongs to another program: give clink-mcp a database (or a schema, with search_path) of its own")
	}
	return version, err
}

// migrate brings the schema up to date under the advisory lock, or refuses
// a database whose schema is newer than this code.
func (p *Postgres) migrate(ctx context.Context) error {
	// A database that is up to date needs no lock: replicas starting
	// together do not queue behind each other.
	version, err := schemaVersion(ctx, p.pool)
	if err != nil {
		return err
	}
	if err := checkVersion(version); err != nil || version == len(postgresMigrations) {
		return err
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("waiting for the migration lock: %w", err)
	}
	defer func() {
		// The lock is the session's: a connection that cannot unlock is
		// closed, which releases it.
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock); err != nil {
			conn.Conn().Close(context.Background())
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)`); err != nil {
		return err
	}
	// Another replica may have migrated while this one waited.
	if version, err = schemaVersion(ctx, conn); err != nil {
		return err
	}
	if err := checkVersion(version); err != nil {
		return err
	}
	for v := version; v < len(postgresMigrations); v++ {
		m := postgresMigrations[v]
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, v+1, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("schema migration %d (%s): %w", v+1, m.name, err)
		}
	}
	return nil
}

// checkVersion refuses a schema newer than this code knows.
func checkVersion(version int) error {
	if version > len(postgresMigrations) {
		return fmt.Errorf("the database has schema version %d, newer than this clink-mcp understands (%d): upgrade clink-mcp",
			version, len(postgresMigrations))
	}
	return nil
}
