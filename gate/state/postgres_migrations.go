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
	{"audit appends, holds and completions in one statement each; commit tokens", `
-- A row per write transaction committed, by a token the writer chose: a
-- writer that lost the answer to its COMMIT looks the token up, and takes
-- it (probe) when it is not there, so that the transaction, had it not
-- ended yet, can no longer commit. Rows are swept after a day.
-- A claim some handle waits on (WaitClaim sets it, under the claim's row
-- lock): only then does its end send a NOTIFY, which wakes every handle's
-- listener.
ALTER TABLE claims ADD COLUMN waited boolean NOT NULL DEFAULT false;

CREATE TABLE commits (
	token text PRIMARY KEY,
	at    bigint NOT NULL,                -- unix ns, database time
	seq   bigint NOT NULL DEFAULT 0,      -- the audit head when it committed: its last record, if it appended one
	probe boolean NOT NULL DEFAULT false  -- taken by a writer's look-up, not by its transaction
);
-- The sweep finds old tokens by time.
CREATE INDEX commits_at ON commits (at);

-- clink_append appends an audit record after the head, which it locks
-- until the transaction ends, and moves the head. head and body are the
-- record's hash input but for the two values the append assigns, its
-- sequence number and the previous record's hash (AuditRecord.hashInput),
-- both ASCII: the hash is computed here, so that no client round trip
-- happens while the head is locked. The record's other columns follow.
-- clink_hold and clink_complete append with the same statement.
CREATE FUNCTION clink_append(head bytea, body bytea,
	r_format integer, r_time text, r_kind text, r_call text, r_caller text, r_tool text,
	r_decision text, r_amount text, r_currency text, r_amounts text, r_email_masked text, r_email_hash text,
	r_customer_id_hash text, r_reference_hash text, r_reservation text, r_session_id text, r_duration_ns bigint,
	OUT a_seq bigint, OUT a_prev_hash text, OUT a_hash text)
LANGUAGE plpgsql AS $$
BEGIN
	WITH h AS (SELECT seq + 1 AS seq, hash AS prev FROM audit_head WHERE id = 1 FOR UPDATE),
		n AS (SELECT h.seq, h.prev, encode(sha256(head || convert_to(length(h.seq::text)::text || ':' || h.seq::text || ',', 'UTF8')
			|| body || convert_to(length(h.prev)::text || ':' || h.prev || ',', 'UTF8')), 'hex') AS hash FROM h),
		i AS (INSERT INTO audit (seq, format, time, kind, call, caller, tool, decision, amount, currency, amounts,
				email_masked, email_hash, customer_id_hash, reference_hash, reservation, session_id, duration_ns, prev_hash, hash)
			SELECT n.seq, r_format, r_time, r_kind, r_call, r_caller, r_tool, r_decision, r_amount, r_currency, r_amounts,
				r_email_masked, r_email_hash, r_customer_id_hash, r_reference_hash, r_reservation, r_session_id, r_duration_ns,
				n.prev, n.hash FROM n),
		u AS (UPDATE audit_head AS a SET seq = n.seq, hash = n.hash FROM n WHERE a.id = 1)
	SELECT n.seq, n.prev, n.hash INTO a_seq, a_prev_hash, a_hash FROM n;
END $$;

-- clink_hold is Postgres.Hold of a call not held on an approval, in one
-- statement: it takes the claim (c_key, unless NULL), locks the counters
-- of the limits (l_*, in the policy's order) in key
-- order, drops the entries that have left their windows, admits the call
-- against every limit in turn, records its entries under reservation
-- h_reservation, appends the intent record, adds the intent and records
-- the transaction's commit token h_token (with the intent record's seq).
-- When the claim is held by another call (o_state 1, with what holds it)
-- or a limit denies the call (o_state 2, o_limit from 0 and what it
-- holds), it writes nothing but the expiry of old entries, and records no
-- token: a token recorded is a hold made. o_state 0 is a hold. h_now and
-- h_clock are the time it records at and the time it judges windows by,
-- NULL for the transaction's time (see clink_now), as c_at and c_clock
-- are the claim's.
CREATE FUNCTION clink_hold(
	c_key text, c_call text, c_fingerprint text, c_at bigint, c_window bigint, c_clock bigint, c_lease bigint,
	l_keys text[], l_kinds smallint[], l_adds bigint[], l_maxes bigint[], l_windows bigint[],
	h_now bigint, h_clock bigint, h_reservation text, h_owner text, h_keys text[], h_token text,
	head bytea, body bytea,
	r_format integer, r_time text, r_kind text, r_call text, r_caller text, r_tool text,
	r_decision text, r_amount text, r_currency text, r_amounts text, r_email_masked text, r_email_hash text,
	r_customer_id_hash text, r_reference_hash text, r_reservation text, r_session_id text, r_duration_ns bigint,
	OUT o_state smallint, OUT o_fingerprint text, OUT o_claim_state smallint, OUT o_result bytea,
	OUT o_limit integer, OUT o_used bigint, OUT o_now bigint, OUT o_clock bigint,
	OUT a_seq bigint, OUT a_prev_hash text, OUT a_hash text)
LANGUAGE plpgsql AS $$
DECLARE
	n integer := COALESCE(array_length(l_keys, 1), 0);
	totals bigint[];
	expired bigint;
	changed boolean := false;
BEGIN
	o_state := 0;
	o_now := clink_now(h_now);
	o_clock := clink_now(h_clock);
	IF c_key IS NOT NULL THEN
		INSERT INTO claims AS c (key, call, fingerprint, at, expires, state, result)
		VALUES (c_key, c_call, c_fingerprint, clink_now(c_at), clink_now(c_at) + c_window, 1, NULL)
		ON CONFLICT (key) DO UPDATE SET call = excluded.call, fingerprint = excluded.fingerprint, at = excluded.at,
			expires = excluded.expires, state = 1, result = NULL, waited = false
		WHERE CASE WHEN c.state = 2 THEN c.expires ELSE GREATEST(c.expires, c.at + c_lease) END <= clink_now(c_clock);
		IF NOT FOUND THEN
			SELECT c.fingerprint, c.state, c.result INTO o_fingerprint, o_claim_state, o_result
				FROM claims AS c WHERE c.key = c_key;
			o_state := 1;
			RETURN;
		END IF;
	END IF;
	IF n > 0 THEN
		-- A counter a sweep deletes between its creation and its lock is
		-- created again.
		FOR attempt IN 1..10 LOOP
			INSERT INTO counters (key, total, win, expires)
				SELECT k, 0, 0, 0 FROM unnest(l_keys) AS k ORDER BY k COLLATE "C" ON CONFLICT (key) DO NOTHING;
			SELECT array_agg(COALESCE(l.total, -1) ORDER BY v.i) INTO totals
				FROM unnest(l_keys) WITH ORDINALITY AS v(key, i)
				LEFT JOIN (SELECT c.key, c.total FROM counters AS c WHERE c.key = ANY(l_keys) ORDER BY c.key FOR UPDATE) AS l
				ON l.key = v.key;
			EXIT WHEN -1 <> ALL(totals);
			IF attempt = 10 THEN
				RAISE EXCEPTION 'counters keep vanishing under a sweep';
			END IF;
		END LOOP;
		FOR i IN 1..n LOOP
			WITH gone AS (DELETE FROM counter_entries AS e WHERE e.key = l_keys[i] AND e.at <= o_clock - l_windows[i] RETURNING e.amount)
			SELECT COALESCE(sum(amount), 0) INTO expired FROM gone;
			IF expired <> 0 THEN
				totals[i] := totals[i] - expired;
				changed := true;
			END IF;
		END LOOP;
		FOR i IN 1..n LOOP
			IF NOT (l_adds[i] <= l_maxes[i] AND totals[i] <= l_maxes[i] - l_adds[i]) THEN
				o_state := 2;
				o_limit := i - 1;
				o_used := totals[i];
				IF c_key IS NOT NULL THEN
					-- The claim just taken: it replaced none but a dead one.
					DELETE FROM claims AS c WHERE c.key = c_key AND c.call = c_call;
				END IF;
				IF changed THEN
					UPDATE counters AS c SET total = v.total
						FROM unnest(l_keys, totals) AS v(key, total) WHERE c.key = ANY(l_keys) AND c.key = v.key;
				END IF;
				RETURN;
			END IF;
		END LOOP;
		INSERT INTO counter_entries (reservation, key, kind, at, amount)
			SELECT h_reservation, v.key, v.kind, o_now, v.amount FROM unnest(l_keys, l_kinds, l_adds) AS v(key, kind, amount);
		-- c.key = ANY(l_keys) makes the plan look the counters up by key
		-- rather than scan them all.
		UPDATE counters AS c SET total = v.total + v.amount, win = v.win, expires = GREATEST(c.expires, o_now + v.win)
			FROM unnest(l_keys, totals, l_adds, l_windows) AS v(key, total, amount, win)
			WHERE c.key = ANY(l_keys) AND c.key = v.key;
	END IF;
	WITH h AS (SELECT seq + 1 AS seq, hash AS prev FROM audit_head WHERE id = 1 FOR UPDATE),
		n AS (SELECT h.seq, h.prev, encode(sha256(head || convert_to(length(h.seq::text)::text || ':' || h.seq::text || ',', 'UTF8')
			|| body || convert_to(length(h.prev)::text || ':' || h.prev || ',', 'UTF8')), 'hex') AS hash FROM h),
		i AS (INSERT INTO audit (seq, format, time, kind, call, caller, tool, decision, amount, currency, amounts,
				email_masked, email_hash, customer_id_hash, reference_hash, reservation, session_id, duration_ns, prev_hash, hash)
			SELECT n.seq, r_format, r_time, r_kind, r_call, r_caller, r_tool, r_decision, r_amount, r_currency, r_amounts,
				r_email_masked, r_email_hash, r_customer_id_hash, r_reference_hash, r_reservation, r_session_id, r_duration_ns,
				n.prev, n.hash FROM n),
		u AS (UPDATE audit_head AS a SET seq = n.seq, hash = n.hash FROM n WHERE a.id = 1)
	SELECT n.seq, n.prev, n.hash INTO a_seq, a_prev_hash, a_hash FROM n;
	INSERT INTO intents (call, seq, owner, claim_key, reservation, at, keys)
		VALUES (r_call, a_seq, h_owner, COALESCE(c_key, ''), h_reservation, o_now, COALESCE(h_keys, '{}'));
	INSERT INTO commits (token, at, seq) VALUES (h_token, clink_now(NULL), a_seq);
END $$;

-- clink_complete is Postgres.Complete in one statement: it locks the
-- call's intent (o_open says whether it was open; when it was not and
-- p_only_if_open is set, it writes nothing and records no token),
-- finishes (c_finish, with c_result) or drops the call's claim c_key
-- (unless NULL), announcing it on c_channel if a handle waits on it
-- (claims.waited), releases the intent's budget
-- entries (kind p_budget) when p_release is set, closes the intent,
-- appends the outcome record and records the commit token p_token (with
-- the record's seq): a token recorded is a completion made.
CREATE FUNCTION clink_complete(p_call text, c_key text, c_finish boolean, c_result bytea, c_channel text,
	c_payload text, p_release boolean, p_budget smallint, p_only_if_open boolean, p_token text,
	head bytea, body bytea,
	r_format integer, r_time text, r_kind text, r_call text, r_caller text, r_tool text,
	r_decision text, r_amount text, r_currency text, r_amounts text, r_email_masked text, r_email_hash text,
	r_customer_id_hash text, r_reference_hash text, r_reservation text, r_session_id text, r_duration_ns bigint,
	OUT o_open boolean, OUT a_seq bigint, OUT a_prev_hash text, OUT a_hash text)
LANGUAGE plpgsql AS $$
DECLARE
	waited boolean;
BEGIN
	PERFORM 1 FROM intents AS i WHERE i.call = p_call FOR UPDATE;
	o_open := FOUND;
	IF NOT o_open AND p_only_if_open THEN
		RETURN;
	END IF;
	IF c_key IS NOT NULL THEN
		IF c_finish THEN
			UPDATE claims AS c SET state = 2, result = c_result WHERE c.key = c_key AND c.call = p_call
				RETURNING c.waited INTO waited;
		ELSE
			DELETE FROM claims AS c WHERE c.key = c_key AND c.call = p_call RETURNING c.waited INTO waited;
		END IF;
		IF waited THEN
			PERFORM pg_notify(c_channel, c_payload);
		END IF;
	END IF;
	IF p_release AND o_open THEN
		PERFORM 1 FROM counters AS c
			WHERE c.key = ANY(COALESCE((SELECT i.keys FROM intents AS i WHERE i.call = p_call), '{}')) ORDER BY c.key FOR UPDATE;
		WITH gone AS (DELETE FROM counter_entries AS e USING intents AS i
			WHERE i.call = p_call AND e.key = ANY(i.keys) AND e.at = i.at AND e.reservation = i.reservation AND e.kind = p_budget
			RETURNING e.key, e.amount)
		UPDATE counters AS c SET total = c.total - g.amount FROM gone AS g WHERE c.key = g.key;
	END IF;
	DELETE FROM intents AS i WHERE i.call = p_call;
	WITH h AS (SELECT seq + 1 AS seq, hash AS prev FROM audit_head WHERE id = 1 FOR UPDATE),
		n AS (SELECT h.seq, h.prev, encode(sha256(head || convert_to(length(h.seq::text)::text || ':' || h.seq::text || ',', 'UTF8')
			|| body || convert_to(length(h.prev)::text || ':' || h.prev || ',', 'UTF8')), 'hex') AS hash FROM h),
		i AS (INSERT INTO audit (seq, format, time, kind, call, caller, tool, decision, amount, currency, amounts,
				email_masked, email_hash, customer_id_hash, reference_hash, reservation, session_id, duration_ns, prev_hash, hash)
			SELECT n.seq, r_format, r_time, r_kind, r_call, r_caller, r_tool, r_decision, r_amount, r_currency, r_amounts,
				r_email_masked, r_email_hash, r_customer_id_hash, r_reference_hash, r_reservation, r_session_id, r_duration_ns,
				n.prev, n.hash FROM n),
		u AS (UPDATE audit_head AS a SET seq = n.seq, hash = n.hash FROM n WHERE a.id = 1)
	SELECT n.seq, n.prev, n.hash INTO a_seq, a_prev_hash, a_hash FROM n;
	INSERT INTO commits (token, at, seq) VALUES (p_token, clink_now(NULL), a_seq);
END $$;
`},
	{"clink_hold plans its statements once", `
-- PostgreSQL plans a PL/pgSQL function's statements with their parameters
-- (custom plans) for the first five calls on a connection, then keeps one
-- generic plan unless the custom ones look cheaper. For clink_hold's two
-- statements on counters (c.key = ANY(l_keys)) they did once the table
-- held some thousands of keys (one per customer with a per-customer
-- limit): each call then planned them again, some 120 us of the
-- database's time per call. Their generic plans look the keys up by the
-- primary key as the custom ones do, so the function uses them always.
-- CREATE OR REPLACE FUNCTION drops the setting: a later step that
-- redefines clink_hold must give it again (SET plan_cache_mode = ...).
ALTER FUNCTION clink_hold SET plan_cache_mode = force_generic_plan;
`},
	{"holds judge windows by the time they hold their counters", `
-- A hold judged its counters' windows by the time its transaction began.
-- One that waited for a counter's lock, while a hold begun later trimmed
-- the counter up to its own later time and committed, then missed the
-- entries trimmed although still inside its own window: a rate limit of 1
-- admitted two calls less than a window apart. Holds now read the time
-- once their counters are locked: the holders of a counter see times that
-- only go up. clink_hold is redefined so; the batched holds (Reserve,
-- approvals) read it with pqLockedNow.
CREATE OR REPLACE FUNCTION clink_hold(
	c_key text, c_call text, c_fingerprint text, c_at bigint, c_window bigint, c_clock bigint, c_lease bigint,
	l_keys text[], l_kinds smallint[], l_adds bigint[], l_maxes bigint[], l_windows bigint[],
	h_now bigint, h_clock bigint, h_reservation text, h_owner text, h_keys text[], h_token text,
	head bytea, body bytea,
	r_format integer, r_time text, r_kind text, r_call text, r_caller text, r_tool text,
	r_decision text, r_amount text, r_currency text, r_amounts text, r_email_masked text, r_email_hash text,
	r_customer_id_hash text, r_reference_hash text, r_reservation text, r_session_id text, r_duration_ns bigint,
	OUT o_state smallint, OUT o_fingerprint text, OUT o_claim_state smallint, OUT o_result bytea,
	OUT o_limit integer, OUT o_used bigint, OUT o_now bigint, OUT o_clock bigint,
	OUT a_seq bigint, OUT a_prev_hash text, OUT a_hash text)
LANGUAGE plpgsql AS $$
DECLARE
	n integer := COALESCE(array_length(l_keys, 1), 0);
	totals bigint[];
	expired bigint;
	changed boolean := false;
BEGIN
	o_state := 0;
	o_now := clink_now(h_now);
	o_clock := clink_now(h_clock);
	IF c_key IS NOT NULL THEN
		INSERT INTO claims AS c (key, call, fingerprint, at, expires, state, result)
		VALUES (c_key, c_call, c_fingerprint, clink_now(c_at), clink_now(c_at) + c_window, 1, NULL)
		ON CONFLICT (key) DO UPDATE SET call = excluded.call, fingerprint = excluded.fingerprint, at = excluded.at,
			expires = excluded.expires, state = 1, result = NULL, waited = false
		WHERE CASE WHEN c.state = 2 THEN c.expires ELSE GREATEST(c.expires, c.at + c_lease) END <= clink_now(c_clock);
		IF NOT FOUND THEN
			SELECT c.fingerprint, c.state, c.result INTO o_fingerprint, o_claim_state, o_result
				FROM claims AS c WHERE c.key = c_key;
			o_state := 1;
			RETURN;
		END IF;
	END IF;
	IF n > 0 THEN
		-- A counter a sweep deletes between its creation and its lock is
		-- created again.
		FOR attempt IN 1..10 LOOP
			INSERT INTO counters (key, total, win, expires)
				SELECT k, 0, 0, 0 FROM unnest(l_keys) AS k ORDER BY k COLLATE "C" ON CONFLICT (key) DO NOTHING;
			SELECT array_agg(COALESCE(l.total, -1) ORDER BY v.i) INTO totals
				FROM unnest(l_keys) WITH ORDINALITY AS v(key, i)
				LEFT JOIN (SELECT c.key, c.total FROM counters AS c WHERE c.key = ANY(l_keys) ORDER BY c.key FOR UPDATE) AS l
				ON l.key = v.key;
			EXIT WHEN -1 <> ALL(totals);
			IF attempt = 10 THEN
				RAISE EXCEPTION 'counters keep vanishing under a sweep';
			END IF;
		END LOOP;
		-- The counters held, their windows are judged by the time now, not
		-- the time the transaction began: a hold that waited for a lock
		-- must not judge by a time earlier than that of a hold that
		-- trimmed the counters meanwhile. The entries are recorded at it.
		IF h_clock IS NULL THEN
			o_clock := (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint;
			IF h_now IS NULL THEN
				o_now := o_clock;
			END IF;
		END IF;
		FOR i IN 1..n LOOP
			WITH gone AS (DELETE FROM counter_entries AS e WHERE e.key = l_keys[i] AND e.at <= o_clock - l_windows[i] RETURNING e.amount)
			SELECT COALESCE(sum(amount), 0) INTO expired FROM gone;
			IF expired <> 0 THEN
				totals[i] := totals[i] - expired;
				changed := true;
			END IF;
		END LOOP;
		FOR i IN 1..n LOOP
			IF NOT (l_adds[i] <= l_maxes[i] AND totals[i] <= l_maxes[i] - l_adds[i]) THEN
				o_state := 2;
				o_limit := i - 1;
				o_used := totals[i];
				IF c_key IS NOT NULL THEN
					-- The claim just taken: it replaced none but a dead one.
					DELETE FROM claims AS c WHERE c.key = c_key AND c.call = c_call;
				END IF;
				IF changed THEN
					UPDATE counters AS c SET total = v.total
						FROM unnest(l_keys, totals) AS v(key, total) WHERE c.key = ANY(l_keys) AND c.key = v.key;
				END IF;
				RETURN;
			END IF;
		END LOOP;
		INSERT INTO counter_entries (reservation, key, kind, at, amount)
			SELECT h_reservation, v.key, v.kind, o_now, v.amount FROM unnest(l_keys, l_kinds, l_adds) AS v(key, kind, amount);
		-- c.key = ANY(l_keys) makes the plan look the counters up by key
		-- rather than scan them all.
		UPDATE counters AS c SET total = v.total + v.amount, win = v.win, expires = GREATEST(c.expires, o_now + v.win)
			FROM unnest(l_keys, totals, l_adds, l_windows) AS v(key, total, amount, win)
			WHERE c.key = ANY(l_keys) AND c.key = v.key;
	END IF;
	WITH h AS (SELECT seq + 1 AS seq, hash AS prev FROM audit_head WHERE id = 1 FOR UPDATE),
		n AS (SELECT h.seq, h.prev, encode(sha256(head || convert_to(length(h.seq::text)::text || ':' || h.seq::text || ',', 'UTF8')
			|| body || convert_to(length(h.prev)::text || ':' || h.prev || ',', 'UTF8')), 'hex') AS hash FROM h),
		i AS (INSERT INTO audit (seq, format, time, kind, call, caller, tool, decision, amount, currency, amounts,
				email_masked, email_hash, customer_id_hash, reference_hash, reservation, session_id, duration_ns, prev_hash, hash)
			SELECT n.seq, r_format, r_time, r_kind, r_call, r_caller, r_tool, r_decision, r_amount, r_currency, r_amounts,
				r_email_masked, r_email_hash, r_customer_id_hash, r_reference_hash, r_reservation, r_session_id, r_duration_ns,
				n.prev, n.hash FROM n),
		u AS (UPDATE audit_head AS a SET seq = n.seq, hash = n.hash FROM n WHERE a.id = 1)
	SELECT n.seq, n.prev, n.hash INTO a_seq, a_prev_hash, a_hash FROM n;
	INSERT INTO intents (call, seq, owner, claim_key, reservation, at, keys)
		VALUES (r_call, a_seq, h_owner, COALESCE(c_key, ''), h_reservation, o_now, COALESCE(h_keys, '{}'));
	INSERT INTO commits (token, at, seq) VALUES (h_token, clink_now(NULL), a_seq);
END $$;
-- CREATE OR REPLACE FUNCTION dropped the setting of migration 4.
ALTER FUNCTION clink_hold SET plan_cache_mode = force_generic_plan;
`},
}

// migrationLock is the pg_advisory_xact_lock key under which migrations
// run ("clinkmcp" in ASCII), so that replicas starting together migrate
// once.
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

// migrate brings the schema up to date under the migration lock, or
// refuses a database whose schema is newer than this code; with
// PostgresNoMigrate, it refuses any schema but this code's.
//
// Each step runs in a transaction of its own that takes the lock first
// (pg_advisory_xact_lock) and reads the version again under it. The lock
// is the transaction's, never the session's: behind a pooler in
// transaction mode (pgbouncer), statements sent outside a transaction run
// on whichever server session is free, so a session's lock would be taken
// on one, the steps run on others, and its unlock miss it (the lock then
// held on until the pooler closes that session, and taken again at once
// by whichever client lands on it).
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
	if p.cfg.noMigrate {
		if version == 0 {
			return errors.New("the database holds no clink-mcp store (no schema_migrations table of clink-mcp's)")
		}
		return &OldSchemaError{Version: version, Current: len(postgresMigrations)}
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	for done := false; !done; {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
				return fmt.Errorf("waiting for the migration lock: %w", err)
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)`); err != nil {
				return err
			}
			// Another replica may have migrated while this one waited.
			v, err := schemaVersion(ctx, tx)
			if err != nil {
				return err
			}
			if err := checkVersion(v); err != nil {
				return err
			}
			if done = v == len(postgresMigrations); done {
				return nil
			}
			m := postgresMigrations[v]
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("schema migration %d (%s): %w", v+1, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, v+1, m.name); err != nil {
				return fmt.Errorf("schema migration %d (%s): %w", v+1, m.name, err)
			}
			return nil
		})
		if err != nil {
			return err
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
