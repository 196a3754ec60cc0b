-- index idx__sqlite_migrations_migration_set_name
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
-- index idx_class_decisions_run_id
CREATE INDEX "idx_class_decisions_run_id"
    ON "class_decisions" ("run_id");
-- index idx_consensus_members_pick_id
CREATE INDEX "idx_consensus_members_pick_id"
    ON "consensus_members" ("pick_id");
-- index idx_consensus_run_id_tomogram_particle
CREATE INDEX "idx_consensus_run_id_tomogram_particle"
    ON "consensus" ("run_id", "tomogram", "particle");
-- index idx_dropped_run_id
CREATE INDEX "idx_dropped_run_id"
    ON "dropped" ("run_id");
-- index idx_export_members_consensus_id
CREATE INDEX "idx_export_members_consensus_id"
    ON "export_members" ("consensus_id");
-- index idx_exports_run_id
CREATE INDEX "idx_exports_run_id"
    ON "exports" ("run_id");
-- index idx_noise_run_id
CREATE INDEX "idx_noise_run_id"
    ON "noise" ("run_id");
-- index idx_picker_estimates_run_id
CREATE INDEX "idx_picker_estimates_run_id"
    ON "picker_estimates" ("run_id");
-- index idx_picks_source_id
CREATE INDEX "idx_picks_source_id"
    ON "picks" ("source_id");
-- index idx_picks_tomogram_particle
CREATE INDEX "idx_picks_tomogram_particle"
    ON "picks" ("tomogram", "particle");
-- index idx_sources_identity
CREATE UNIQUE INDEX "idx_sources_identity"
    ON "sources" ("identity");
-- index idx_sources_sha256
CREATE INDEX "idx_sources_sha256"
    ON "sources" ("sha256");
-- table class_decisions
CREATE TABLE "class_decisions" (
   "id" INTEGER PRIMARY KEY,
   "run_id" INTEGER REFERENCES "runs"("id"),
   "particle" TEXT,
   "beta" REAL,
   "threshold" REAL,
   "n_candidates" INTEGER,
   "n_accepted" INTEGER,
   "expected_particles" REAL,
   "expected_missed" REAL,
   "expected_precision" REAL,
   "expected_recall" REAL,
   "expected_fbeta" REAL
);
-- table consensus
CREATE TABLE "consensus" (
   "id" INTEGER PRIMARY KEY,
   "run_id" INTEGER REFERENCES "runs"("id"),
   "tomogram" TEXT,
   "particle" TEXT,
   "x" REAL,
   "y" REAL,
   "z" REAL,
   "support" REAL,
   "n_members" INTEGER,
   "pickers" TEXT,
   "score" REAL,
   "vote_score" REAL,
   "cnn_score" REAL,
   "status" TEXT,
   "accepted" INTEGER,
   "reason" TEXT
, "forced" INTEGER, "decided_by" TEXT, "vote_reason" TEXT, "posterior" REAL, "rot" REAL, "tilt" REAL, "psi" REAL);
-- table consensus_members
CREATE TABLE "consensus_members" (
   "consensus_id" INTEGER REFERENCES "consensus"("id"),
   "pick_id" INTEGER REFERENCES "picks"("id"),
   "picker" TEXT,
   "distance" REAL, "duplicate_of" INTEGER,
   PRIMARY KEY ("consensus_id", "pick_id")
);
-- table dropped
CREATE TABLE "dropped" (
   "id" INTEGER PRIMARY KEY,
   "run_id" INTEGER REFERENCES "runs"("id"),
   "kind" TEXT,
   "ref_id" INTEGER,
   "stage" TEXT,
   "reason" TEXT
);
-- table export_members
CREATE TABLE "export_members" (
   "export_id" INTEGER REFERENCES "exports"("id"),
   "consensus_id" INTEGER REFERENCES "consensus"("id"),
   PRIMARY KEY ("export_id", "consensus_id")
);
-- table exports
CREATE TABLE "exports" (
   "id" INTEGER PRIMARY KEY,
   "run_id" INTEGER REFERENCES "runs"("id"),
   "path" TEXT,
   "format" TEXT,
   "sha256" TEXT,
   "n_rows" INTEGER,
   "created_at" TEXT
);
-- table models
CREATE TABLE "models" (
   "id" INTEGER PRIMARY KEY,
   "run_id" INTEGER REFERENCES "runs"("id"),
   "path" TEXT,
   "sha256" TEXT,
   "card" TEXT,
   "created_at" TEXT
);
-- table noise
CREATE TABLE "noise" (
   "id" INTEGER PRIMARY KEY,
   "run_id" INTEGER REFERENCES "runs"("id"),
   "tomogram" TEXT,
   "x" REAL,
   "y" REAL,
   "z" REAL
);
-- table picker_estimates
CREATE TABLE "picker_estimates" (
   "id" INTEGER PRIMARY KEY,
   "run_id" INTEGER REFERENCES "runs"("id"),
   "picker" TEXT,
   "particle" TEXT,
   "n_reported" INTEGER,
   "recall" REAL,
   "false_rate" REAL,
   "precision" REAL
);
-- table picks
CREATE TABLE "picks" (
   "id" INTEGER PRIMARY KEY,
   "source_id" INTEGER REFERENCES "sources"("id"),
   "record" INTEGER,
   "tomogram" TEXT,
   "particle" TEXT,
   "x" REAL,
   "y" REAL,
   "z" REAL,
   "score" REAL,
   "score_field" TEXT,
   "particle_field" TEXT,
   "rot" REAL,
   "tilt" REAL,
   "psi" REAL,
   "angle_convention" TEXT,
   "original" TEXT
);
-- table runs
CREATE TABLE "runs" (
   "id" INTEGER PRIMARY KEY,
   "command" TEXT,
   "method" TEXT,
   "params" TEXT,
   "version" TEXT,
   "seed" INTEGER,
   "started_at" TEXT,
   "ended_at" TEXT,
   "status" TEXT,
   "message" TEXT
, "pid" INTEGER, "host" TEXT, "process_start" TEXT, "heartbeat_at" TEXT);
-- table scores
CREATE TABLE "scores" (
   "consensus_id" INTEGER REFERENCES "consensus"("id"),
   "model_id" INTEGER REFERENCES "models"("id"),
   "particle" TEXT,
   "score" REAL,
   PRIMARY KEY ("consensus_id", "model_id", "particle")
);
-- table sources
CREATE TABLE "sources" (
   "id" INTEGER PRIMARY KEY,
   "path" TEXT,
   "sha256" TEXT,
   "size" INTEGER,
   "adapter" TEXT,
   "adapter_version" TEXT,
   "picker" TEXT,
   "role" TEXT,
   "options" TEXT,
   "warnings" TEXT,
   "n_picks" INTEGER,
   "imported_at" TEXT,
   "run_id" INTEGER REFERENCES "runs"("id")
, "identity" TEXT);
-- table tomograms
CREATE TABLE "tomograms" (
   "name" TEXT PRIMARY KEY,
   "path" TEXT,
   "voxel_size" REAL,
   "shape" TEXT,
   "registered_at" TEXT
);
