-- The bus id of a published event, as numbers, so events can be read back in id order (an
-- SSE client resuming further back than the bus remembers).
ALTER TABLE events ADD COLUMN published_ms BIGINT;
ALTER TABLE events ADD COLUMN published_seq BIGINT;
CREATE INDEX events_published_idx ON events (published_ms, published_seq) WHERE published_ms IS NOT NULL;
