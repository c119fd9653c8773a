-- Passcode attempts reserved and not yet settled. A link is locked only when its budget is spent
-- and no reservation is pending, so a right passcode that arrives while the last attempts are
-- being verified waits for their verdict instead of seeing the link as exhausted. A reservation
-- whose verdict never came (the process died) counts as spent once its lease has passed.
ALTER TABLE health_links ADD COLUMN attempts_in_flight BIGINT NOT NULL DEFAULT 0;
ALTER TABLE health_links ADD COLUMN attempt_lease_until BIGINT NOT NULL DEFAULT 0;
