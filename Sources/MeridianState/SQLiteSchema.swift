import GRDB

/// The versioned schema of the SQLite state store. Migrations are only ever
/// appended: a released migration is never edited, so every file walks the
/// same path from empty to the newest version (docs/state.md, "Migrations").
enum SQLiteSchema {
    /// Identifiers in the order they apply; the last is the current version.
    static let versions = ["v1", "v2", "v3"]

    static func migrator() -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: v1)
        }
        migrator.registerMigration("v2") { db in
            try db.execute(sql: v2)
        }
        migrator.registerMigration("v3") { db in
            try db.execute(sql: v3)
        }
        return migrator
    }

    /// The append-only triggers of v1, recreated after a replacing import.
    static let auditTriggers = """
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        """

    /// The one key of keyed hashes of sensitive files (docs/state.md, "File hash key").
    static let v2 = """
        CREATE TABLE file_hash_key (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            key BLOB NOT NULL CHECK (length(key) = 32),
            created_at INTEGER NOT NULL
        );
        """

    /// Rollouts: the current record of each (JSON the engine writes), every
    /// transition of it, and operators' commands waiting for the run that
    /// drives them. (Named v3: v2 is the file hash key, added beside it.)
    static let v3 = """
        CREATE TABLE rollouts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER REFERENCES runs(id),
            region TEXT NOT NULL,
            component TEXT NOT NULL,
            phase TEXT NOT NULL,
            terminal INTEGER NOT NULL CHECK (terminal IN (0, 1)),
            record BLOB NOT NULL,
            started_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE UNIQUE INDEX rollouts_unfinished ON rollouts(region, component) WHERE terminal = 0;
        CREATE INDEX rollouts_by_component ON rollouts(region, component, id);

        CREATE TABLE rollout_transitions (
            rollout_id INTEGER NOT NULL REFERENCES rollouts(id),
            seq INTEGER NOT NULL,
            run_id INTEGER REFERENCES runs(id),
            from_phase TEXT,
            to_phase TEXT NOT NULL,
            effect TEXT NOT NULL,
            detail TEXT NOT NULL,
            at INTEGER NOT NULL,
            PRIMARY KEY (rollout_id, seq)
        ) WITHOUT ROWID;

        CREATE TABLE rollout_commands (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            subject TEXT NOT NULL,
            command TEXT NOT NULL,
            actor TEXT NOT NULL,
            requested_at INTEGER NOT NULL,
            taken_at INTEGER
        );
        CREATE INDEX rollout_commands_pending ON rollout_commands(subject, id) WHERE taken_at IS NULL;
        """

    /// Times are INTEGER milliseconds since 1970 UTC; details are JSON text.
    static let v1 = """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            owner_user TEXT NOT NULL,
            owner_host TEXT NOT NULL,
            owner_pid INTEGER NOT NULL,
            fleet_commit TEXT,
            plan_hash TEXT,
            started_at INTEGER NOT NULL,
            finished_at INTEGER,
            outcome TEXT,
            exit_code INTEGER,
            summary TEXT,
            CHECK ((finished_at IS NULL) = (outcome IS NULL))
        );
        CREATE INDEX runs_unfinished ON runs(id) WHERE outcome IS NULL;

        CREATE TABLE run_regions (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            region TEXT NOT NULL,
            PRIMARY KEY (run_id, region)
        ) WITHOUT ROWID;
        CREATE INDEX run_regions_by_region ON run_regions(region, run_id);

        CREATE TABLE journal (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            region TEXT NOT NULL,
            host TEXT NOT NULL,
            step TEXT NOT NULL,
            detail TEXT NOT NULL,
            begun_at INTEGER NOT NULL,
            finished_at INTEGER,
            outcome TEXT,
            outcome_detail TEXT,
            CHECK ((finished_at IS NULL) = (outcome IS NULL))
        );
        CREATE INDEX journal_by_run ON journal(run_id, id);
        CREATE INDEX journal_unfinished ON journal(id) WHERE outcome IS NULL;

        CREATE TABLE applied_manifests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            region TEXT NOT NULL,
            host TEXT NOT NULL,
            manifest BLOB NOT NULL,
            sha256 TEXT NOT NULL,
            applied_at INTEGER NOT NULL
        );
        CREATE INDEX applied_manifests_by_host ON applied_manifests(region, host, id);

        CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            time INTEGER NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            subject TEXT NOT NULL,
            detail TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        -- The log is append-only. These triggers stop an edit by mistake;
        -- a deliberate one (dropping them first) is what verify catches.
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

        CREATE TABLE audit_head (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL
        );

        CREATE TABLE leases (
            region TEXT PRIMARY KEY,
            holder_user TEXT NOT NULL,
            holder_host TEXT NOT NULL,
            holder_pid INTEGER NOT NULL,
            run_id INTEGER REFERENCES runs(id),
            acquired_at INTEGER NOT NULL,
            renewed_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE drift_checks (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            region TEXT NOT NULL,
            host TEXT NOT NULL,
            examined INTEGER NOT NULL,
            reason TEXT,
            PRIMARY KEY (run_id, region, host)
        ) WITHOUT ROWID;

        CREATE TABLE drift_findings (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            region TEXT NOT NULL,
            host TEXT NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            detail TEXT NOT NULL,
            first_seen_run INTEGER NOT NULL REFERENCES runs(id),
            first_seen_at INTEGER NOT NULL,
            last_seen_run INTEGER NOT NULL REFERENCES runs(id),
            last_seen_at INTEGER NOT NULL,
            cleared_run INTEGER REFERENCES runs(id),
            cleared_at INTEGER,
            CHECK ((cleared_run IS NULL) = (cleared_at IS NULL))
        );
        CREATE UNIQUE INDEX drift_findings_open ON drift_findings(region, host, kind, subject) WHERE cleared_at IS NULL;
        CREATE INDEX drift_findings_by_region ON drift_findings(region, first_seen_at);

        CREATE TABLE drift_sightings (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            finding_id INTEGER NOT NULL REFERENCES drift_findings(id),
            detail TEXT NOT NULL,
            PRIMARY KEY (run_id, finding_id)
        ) WITHOUT ROWID;
        """
}
